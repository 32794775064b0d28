// Deploy, list, inspect and delete functions.
import Router from '@koa/router';
import { badRequest, notFound } from '../../common/errors';
import { NAME_RE } from '../../common/types';
import { namespaceOf } from '../auth';
import { readRaw } from '../body';
import { inspectPackage } from '../package';
import { Deps } from '../deps';

export function functionRoutes(router: Router, d: Deps): void {
  router.put('/v1/functions/:name', async (ctx) => {
    const name = validName(ctx.params.name);
    const ns = namespaceOf(ctx);
    const tgz = await readRaw(ctx, d.config.KILN_MAX_PACKAGE_BYTES);
    if (tgz.length === 0) throw badRequest('the body must be the function package: a .tar.gz holding kiln.json and the code');
    const { manifest, digest } = await inspectPackage(tgz);
    if (manifest.name !== name) throw badRequest(`kiln.json names '${manifest.name}' but the URL names '${name}'`);
    const fn = await d.functions.deploy(ns, manifest, digest, tgz);
    ctx.body = { name: fn.name, namespace: fn.namespace, version: fn.version, digest: fn.digest };
  });

  router.get('/v1/functions', async (ctx) => {
    ctx.body = { functions: await d.functions.list(namespaceOf(ctx)) };
  });

  router.get('/v1/functions/:name', async (ctx) => {
    const name = validName(ctx.params.name);
    const ns = namespaceOf(ctx);
    const fn = await d.functions.get(ns, name);
    if (!fn) throw notFound(`no function '${name}' in namespace '${ns}'`);
    ctx.body = fn;
  });

  router.delete('/v1/functions/:name', async (ctx) => {
    const name = validName(ctx.params.name);
    const ns = namespaceOf(ctx);
    if (!(await d.functions.delete(ns, name))) throw notFound(`no function '${name}' in namespace '${ns}'`);
    ctx.body = { name, namespace: ns, deleted: true };
  });
}

export function validName(name: string): string {
  if (!NAME_RE.test(name)) throw badRequest(`invalid function name '${name.slice(0, 80)}': lowercase letters, digits, - and _, at most 63`);
  return name;
}
