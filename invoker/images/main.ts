// `node dist/invoker/images/main.js [--force]`: prepares the base and runtime layers.
import { loadConfig } from '../../common/config';
import { LayerStore } from './layers';
import { ensureRuntimeLayers } from './build';

async function main() {
  const config = loadConfig();
  const started = Date.now();
  const layers = await ensureRuntimeLayers(new LayerStore(config.KILN_LAYERS_DIR), process.execPath, process.argv.includes('--force'));
  console.log(`layers ready in ${Date.now() - started} ms: base ${layers.base}, node20 ${layers.runtimes.node20}`);
}

main().catch((e) => {
  console.error(`kiln: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
});
