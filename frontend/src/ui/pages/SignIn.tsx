// Signing in: with a username and password, or with an access token. Both post JSON to
// the server's `/sign-in`, which sets the session cookie; then the page named by `next`
// opens (where the visitor was sent here from).

import { useEffect, useState, type FormEvent, type ReactNode } from "react";

import { useViewer } from "../components/Viewer";
import { navigate } from "../router";
import "./SignIn.css";

type Credentials = { username: string; password: string } | { token: string };

/** The server's refusal, as it words it ("wrong username or password", …). */
async function signIn(credentials: Credentials): Promise<string | null> {
  const response = await fetch("/sign-in", {
    method: "POST",
    credentials: "same-origin",
    headers: { Accept: "application/json", "Content-Type": "application/json" },
    body: JSON.stringify(credentials),
  });
  if (response.ok) return null;
  try {
    const body = (await response.json()) as { message?: string };
    return body.message ?? `Signing in failed (${response.status})`;
  } catch {
    return `Signing in failed (${response.status})`;
  }
}

export function SignInPage(props: { next: string }): ReactNode {
  const viewer = useViewer();
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [signedIn, setSignedIn] = useState(false);
  // Leaves once the frame knows who signed in, so the next page finds them.
  const arrived = signedIn && viewer.user !== null;
  useEffect(() => {
    if (arrived) navigate(props.next, { replace: true });
  }, [arrived, props.next]);

  const submit = (credentials: Credentials) => async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    const refusal = await signIn(credentials);
    setBusy(false);
    if (refusal !== null) {
      setError(refusal);
      return;
    }
    setSignedIn(true);
    viewer.refetch();
  };

  return (
    <div className="sign-in">
      <h1>Sign in to modelreg</h1>
      {error ? (
        <p className="alert" data-testid="sign-in-error">
          {error}
        </p>
      ) : null}
      <form className="card" onSubmit={(event) => void submit({ username, password })(event)}>
        <label className="field">
          <span>Username</span>
          <input
            name="username"
            autoComplete="username"
            required
            value={username}
            onChange={(event) => setUsername(event.target.value)}
            data-testid="sign-in-username"
          />
        </label>
        <label className="field">
          <span>Password</span>
          <input
            name="password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(event) => setPassword(event.target.value)}
            data-testid="sign-in-password"
          />
        </label>
        <button type="submit" className="primary" disabled={busy} data-testid="sign-in-submit">
          Sign in
        </button>
      </form>
      <form className="card" onSubmit={(event) => void submit({ token })(event)}>
        <label className="field">
          <span>Access token</span>
          <input
            name="token"
            type="password"
            autoComplete="off"
            required
            value={token}
            onChange={(event) => setToken(event.target.value)}
            data-testid="sign-in-token"
          />
        </label>
        <button type="submit" disabled={busy} data-testid="sign-in-token-submit">
          Sign in with the token
        </button>
      </form>
    </div>
  );
}
