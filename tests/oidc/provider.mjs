// The OpenID provider the OIDC tests sign in against: node-oidc-provider, the certified
// implementation, on a free port of 127.0.0.1. Configured by one JSON document in
// OIDC_TEST_CONFIG (accounts, clients, and which clients get a deliberately broken
// ID token); prints {"issuer": ...} on one line once it answers.
//
// Behaviour chosen to match the Kreis' Keycloak:
// - e-mail, name and groups stand in the ID token itself (conformIdTokenClaims off);
// - refresh tokens without offline_access, bound to the provider session, so that a
//   refresh fails once the person has signed out at the provider;
// - PKCE required; no consent screen for the registered clients (first-party).
//
// Clients named in "tamper" receive an ID token that the provider re-signs after the
// fact, as a broken or hostile provider would: "audience" (issued for another
// application, with azp naming this client), "expired" (exp an hour ago), "foreign-key"
// (signed with a key that is not in the published JWKS, under the published key id).

import { createServer } from 'node:http';

import * as jose from 'jose';
import Provider from 'oidc-provider';

const settings = JSON.parse(process.env.OIDC_TEST_CONFIG);
const accounts = settings.accounts;
const tamper = settings.tamper || {};
const KID = 'kim-test-signing';

const signing = await jose.generateKeyPair('RS256', { extractable: true });
const foreign = await jose.generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await jose.exportJWK(signing.privateKey)), kid: KID, alg: 'RS256', use: 'sig' };

const server = createServer();
await new Promise((resolve) => { server.listen(0, '127.0.0.1', resolve); });
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: settings.clients,
  jwks: { keys: [jwk] },
  claims: {
    openid: ['sub', 'groups'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  pkce: { required: () => true },
  ttl: { IdToken: settings.idTokenTtl || 300 },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  async findAccount(ctx, id) {
    if (!Object.hasOwn(accounts, id)) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...accounts[id] }) };
  },
  async loadExistingGrant(ctx) {
    const { client, session } = ctx.oidc;
    const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
    grant.addOIDCScope('openid email profile');
    grant.addOIDCClaims(['email', 'email_verified', 'name', 'groups']);
    await grant.save();
    return grant;
  },
});

provider.use(async (ctx, next) => {
  await next();
  const mode = tamper[ctx.oidc?.client?.clientId];
  if (ctx.method !== 'POST' || ctx.path !== '/token' || ctx.status !== 200 || !mode) return;
  if (!ctx.body?.id_token) return;
  const claims = jose.decodeJwt(ctx.body.id_token);
  let key = signing.privateKey;
  if (mode === 'audience') {
    claims.aud = 'another-application';
    claims.azp = ctx.oidc.client.clientId;
  } else if (mode === 'expired') {
    claims.iat -= 4200;
    claims.exp = claims.iat + 600;
  } else if (mode === 'foreign-key') {
    key = foreign.privateKey;
  }
  const idToken = await new jose.SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: KID, typ: 'JWT' })
    .sign(key);
  ctx.body = { ...ctx.body, id_token: idToken };
});

server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer })}\n`);
