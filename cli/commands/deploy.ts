// kiln deploy DIR: pack the function directory and PUT it under the name in its kiln.json.
import { KilnClient, seg } from '../client';
import { Ctx } from '../context';
import { packDirectory, readManifest } from '../package';

export interface DeployResult {
  name: string;
  namespace: string;
  version: number;
  digest: string;
}

/** Packs and uploads DIR; resolves to the API's answer. Also used by the platform supervisor. */
export async function deployDirectory(client: KilnClient, dir: string): Promise<DeployResult> {
  const manifest = await readManifest(dir);
  const tarball = await packDirectory(dir);
  return client.call<DeployResult>('PUT', `/v1/functions/${seg(manifest.name)}`, {
    body: tarball,
    contentType: 'application/gzip',
  });
}

export async function deploy(ctx: Ctx, dir: string): Promise<void> {
  const r = await deployDirectory(ctx.client, dir);
  if (ctx.json) ctx.print(JSON.stringify(r));
  else ctx.print(`deployed ${r.name} version ${r.version} in namespace ${r.namespace} (${r.digest})`);
}
