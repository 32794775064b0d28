// Failures the CLI reports itself: one line on stderr, then this exit code.
export class CliError extends Error {
  constructor(message: string, public readonly exitCode = 1) {
    super(message);
    this.name = 'CliError';
  }
}

/** A mistake in how kiln was called (bad flag value, unreadable -d file): exit 2. */
export const usageError = (message: string) => new CliError(message, 2);
