// The viewer's access tokens (for the mlflow client, CI, curl): create one with its
// scopes and an expiry date, whose secret is shown once, right after; revoke one.

import { useState, type FormEvent, type ReactNode } from "react";

import { request, useQuery } from "../api";
import { asError, FieldError, type MutationError } from "../components/FieldError";
import { formatDate, formatDateTime } from "../components/format";
import { QueryStatus } from "../components/QueryStatus";
import { useSignedIn } from "../components/Viewer";
import tokensCreate from "../operations/TokensCreate.graphql?raw";
import tokensList from "../operations/TokensList.graphql?raw";
import tokensRevoke from "../operations/TokensRevoke.graphql?raw";

const SCOPES = [
  { scope: "api", label: "api: read and write" },
  { scope: "read_api", label: "read_api: read only" },
];
const CREATE_FIELDS = ["name", "scopes", "expiresAt"];

interface Token {
  id: number;
  name: string;
  scopes: string[];
  expiresAt: string | null;
  revokedAt: string | null;
  lastUsedAt: string | null;
  createdAt: string;
}

interface TokensListData {
  viewer: { user: { id: string; username: string }; tokens: Token[] } | null;
}

interface TokensCreateData {
  tokenCreate: { __typename: string; secret?: string; token?: { id: number; name: string } };
}

interface TokensRevokeData {
  tokenRevoke: { __typename: string };
}

export function TokensPage(): ReactNode {
  const signedIn = useSignedIn();
  const query = useQuery<TokensListData>(tokensList);
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState<string[]>(["api"]);
  const [expires, setExpires] = useState("");
  const [error, setError] = useState<MutationError | null>(null);
  const [created, setCreated] = useState<{ name: string; secret: string } | null>(null);
  const [revokeError, setRevokeError] = useState<string | null>(null);
  if (!signedIn) return <p className="muted">Loading…</p>;
  if (!query.data?.viewer) return <QueryStatus state={query} />;
  const tokens = query.data.viewer.tokens;

  const create = async (event: FormEvent): Promise<void> => {
    event.preventDefault();
    const input = {
      name: name.trim(),
      scopes,
      // The end of the chosen day, in the viewer's time zone.
      expiresAt: expires ? new Date(`${expires}T23:59:59`).toISOString() : null,
    };
    const result = (await request<TokensCreateData>(tokensCreate, { input })).tokenCreate;
    const failure = asError(result);
    setError(failure);
    if (failure || !result.secret || !result.token) return;
    setCreated({ name: result.token.name, secret: result.secret });
    setName("");
    setExpires("");
    query.refetch();
  };
  const revoke = async (token: Token): Promise<void> => {
    const result = (await request<TokensRevokeData>(tokensRevoke, { id: token.id })).tokenRevoke;
    const failure = asError(result);
    setRevokeError(failure ? failure.message : null);
    query.refetch();
  };
  const toggle = (scope: string, on: boolean): void =>
    setScopes(on ? [...scopes, scope] : scopes.filter((each) => each !== scope));

  return (
    <>
      <div className="page-header">
        <h1>Access tokens</h1>
      </div>
      <p className="muted">
        A token signs in the mlflow client (<code>MLFLOW_TRACKING_TOKEN</code>), CI jobs and
        scripts as you.
      </p>
      {created ? (
        <div className="notice" data-testid="token-created">
          <p>
            Your new token <strong>{created.name}</strong>. Copy it now: it will not be shown
            again.
          </p>
          <pre data-testid="token-secret">{created.secret}</pre>
          <button type="button" onClick={() => setCreated(null)} data-testid="token-dismiss">
            Done
          </button>
        </div>
      ) : null}
      <form className="card" onSubmit={(event) => void create(event)} data-testid="token-create">
        <h2>New token</h2>
        <FieldError error={error} field={null} fields={CREATE_FIELDS} />
        <label className="field">
          <span>Name</span>
          <input
            required
            value={name}
            onChange={(event) => setName(event.target.value)}
            data-testid="token-name"
          />
          <FieldError error={error} field="name" />
        </label>
        <fieldset className="field">
          <span>Scopes</span>
          {SCOPES.map((option) => (
            <label key={option.scope} className="row">
              <input
                type="checkbox"
                checked={scopes.includes(option.scope)}
                onChange={(event) => toggle(option.scope, event.target.checked)}
                data-testid={`token-scope-${option.scope}`}
              />
              {option.label}
            </label>
          ))}
          <FieldError error={error} field="scopes" />
        </fieldset>
        <label className="field">
          <span>Expires (optional)</span>
          <input
            type="date"
            value={expires}
            onChange={(event) => setExpires(event.target.value)}
            data-testid="token-expires"
          />
          <FieldError error={error} field="expiresAt" />
        </label>
        <button type="submit" className="primary" data-testid="token-submit">
          Create token
        </button>
      </form>
      {revokeError ? <p className="alert">{revokeError}</p> : null}
      <table className="table" data-testid="tokens-table">
        <thead>
          <tr>
            <th>Name</th>
            <th>Scopes</th>
            <th>Created</th>
            <th>Last used</th>
            <th>Expires</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {tokens.map((token) => (
            <tr key={token.id} data-testid="token-row" data-name={token.name}>
              <td>{token.name}</td>
              <td>{token.scopes.join(", ")}</td>
              <td className="muted">{formatDateTime(token.createdAt)}</td>
              <td className="muted">{formatDateTime(token.lastUsedAt)}</td>
              <td className="muted">{token.expiresAt ? formatDate(token.expiresAt) : "never"}</td>
              <td className="number">
                {token.revokedAt ? (
                  <span className="badge danger" data-testid="token-revoked">
                    Revoked
                  </span>
                ) : (
                  <button
                    type="button"
                    className="danger"
                    onClick={() => void revoke(token)}
                    data-testid="token-revoke"
                  >
                    Revoke
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
