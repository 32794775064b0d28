// The `kiln` command line: flags and subcommands wired to one small module per command.
// run() never throws: it prints at most one `kiln: ...` line on stderr and returns the exit code
// (0 ok, 1 failure, 2 usage error).
import { Command, CommanderError } from 'commander';
import { ApiError } from './client';
import { activations, parseLimit } from './commands/activations';
import { deploy } from './commands/deploy';
import { inspect } from './commands/inspect';
import { invoke } from './commands/invoke';
import { logs } from './commands/logs';
import { ls } from './commands/ls';
import { createNamespace, namespaceLimits, parseLimitValue } from './commands/namespaces';
import { ps, stats } from './commands/ps';
import { rm } from './commands/rm';
import { usage } from './commands/usage';
import { packageVersion, version } from './commands/version';
import { Ctx, GlobalOptions, makeCtx } from './context';
import { CliError } from './errors';

type Handler = (ctx: Ctx, ...args: any[]) => unknown; // eslint-disable-line @typescript-eslint/no-explicit-any

/** commander passes (...arguments, options, command); the handler gets (ctx, ...arguments, options). */
function action(handler: Handler) {
  return async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    await handler(makeCtx(cmd.optsWithGlobals<GlobalOptions>()), ...args.slice(0, -1));
  };
}

export function buildProgram(): Command {
  const program = new Command('kiln')
    .description('kiln serverless platform CLI')
    .option('--json', 'machine-readable output: the API response as JSON')
    .option('--url <url>', 'gateway URL [env KILN_URL, else http://127.0.0.1:$KILN_PORT]')
    .option('--key <key>', 'API key [env KILN_API_KEY, else $KILN_STATE_DIR/admin-key]')
    .version(packageVersion(), '-V, --version')
    .exitOverride()
    .configureOutput({
      // Commander's own errors become the single `kiln: ...` line; the help it would dump on
      // stderr for a missing subcommand is replaced by one line in run().
      outputError: (str) => process.stderr.write(`kiln: ${oneLine(str.replace(/^error: /, ''))}\n`),
      writeErr: () => undefined,
    })
    .showSuggestionAfterError();

  program.command('deploy').argument('<dir>', 'function directory holding kiln.json').description('deploy or update a function').action(action(deploy));
  program
    .command('invoke')
    .argument('<name>')
    .description('invoke a function and print its result')
    .option('-d, --data <json>', 'the event: JSON, @file, or @- for stdin (default {})')
    .option('--async', 'do not wait; print the activation id')
    .action(action(invoke));
  program.command('ls').description('list functions').action(action(ls));
  program.command('inspect').argument('<name>').description("show a function's config, versions and digest").action(action(inspect));
  program.command('rm').argument('<name>').description('delete a function').action(action(rm));
  program.command('logs').argument('<target>', 'function name or activation id').description('logs of an activation (a function\'s newest)').action(action(logs));
  program
    .command('activations')
    .argument('[name]', 'only this function')
    .option('--limit <n>', 'how many records', parseLimit)
    .description('recent activations, newest first')
    .action(action(activations));
  const ns = program.command('namespaces').description('manage namespaces (admin key)');
  ns.command('create').argument('<name>').description('create a namespace and print its API key').action(action(createNamespace));
  ns.command('limits')
    .argument('<name>')
    .option('--rate <n>', 'invocations per second (0: no rate limit; "default")', parseLimitValue)
    .option('--burst <n>', 'invocations at once above the rate ("default")', parseLimitValue)
    .option('--in-flight <n>', 'invocations queued or running at once (0: no limit; "default")', parseLimitValue)
    .description("show a namespace's admission limits; with options, set them (admin key)")
    .action(action(namespaceLimits));
  program.command('ps').description('containers on every live invoker').action(action(ps));
  program
    .command('stats')
    .option('--interval <ms>', 'time between the two samples', '2500')
    .description('CPU and memory use per container')
    .action(action(stats));
  program
    .command('usage')
    .option('--from <time>', 'epoch ms or ISO 8601 (default: 24 hours before --to)')
    .option('--to <time>', 'epoch ms or ISO 8601 (default: now)')
    .description('billed time, GB-seconds and CPU per namespace')
    .action(action(usage));
  program.command('version').description('print the CLI version').action(action(version));
  return program;
}

function oneLine(s: string): string {
  return s.trim().replace(/\s*\n\s*/g, ' ');
}

export async function run(argv: string[]): Promise<number> {
  const program = buildProgram();
  let reached = 'kiln'; // the command whose subcommand is missing, for the hint below
  program.hook('preSubcommand', (_self, sub) => {
    reached = `kiln ${sub.name()}`;
  });
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return 0; // --help, --version
      if (err.code === 'commander.help') process.stderr.write(`kiln: missing command (see '${reached} --help')\n`);
      return 2; // commander has printed its message through outputError
    }
    let message = err instanceof Error ? err.message : String(err);
    if (err instanceof ApiError) message = `${message} (${err.code})`;
    process.stderr.write(`kiln: ${oneLine(message)}\n`);
    return err instanceof CliError ? err.exitCode : 1;
  }
}
