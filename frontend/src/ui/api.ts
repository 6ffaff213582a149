// The UI's one way to the server: GraphQL over POST /graphql with the session cookie
// (and its CSRF header), subscriptions over graphql-transport-ws on the same path.
//
// Every operation is a `.graphql` file beside the page that sends it, imported with
// `?raw`; the test suite validates each one against schema.graphql.

import { useCallback, useEffect, useRef, useState } from "react";
import { createClient, type Client } from "graphql-ws";

import { csrfHeaders } from "../shared/session";

export const GRAPHQL_PATH = "/graphql";

export type Variables = Record<string, unknown>;

/** A request GraphQL answered with `errors` (or the server could not answer at all).
 * `code` is `extensions.code` of the first error: UNAUTHENTICATED, VALIDATION_ERROR, … */
export class RequestError extends Error {
  constructor(
    message: string,
    readonly code: string | null,
    readonly status: number,
  ) {
    super(message);
  }
}

interface GraphQLResponse<T> {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string } }[];
}

export async function request<T>(
  document: string,
  variables: Variables = {},
  signal?: AbortSignal,
): Promise<T> {
  const response = await fetch(GRAPHQL_PATH, {
    method: "POST",
    credentials: "same-origin",
    headers: { Accept: "application/json", "Content-Type": "application/json", ...csrfHeaders() },
    body: JSON.stringify({ query: document, variables }),
    signal,
  });
  let body: GraphQLResponse<T>;
  try {
    body = (await response.json()) as GraphQLResponse<T>;
  } catch {
    throw new RequestError(`The server answered ${response.status}`, null, response.status);
  }
  const first = body.errors?.[0];
  if (first || body.data == null) {
    throw new RequestError(
      first?.message ?? `The server answered ${response.status}`,
      first?.extensions?.code ?? null,
      response.status,
    );
  }
  return body.data;
}

export interface QueryState<T> {
  data: T | null;
  error: RequestError | null;
  loading: boolean;
  /** Sends the query again (after a mutation), keeping the shown data meanwhile. */
  refetch: () => void;
}

/** Runs `document` now and whenever `variables` change (compared as JSON). */
export function useQuery<T>(document: string, variables: Variables = {}): QueryState<T> {
  const key = JSON.stringify(variables);
  const [state, setState] = useState<{ data: T | null; error: RequestError | null }>({
    data: null,
    error: null,
  });
  const [loading, setLoading] = useState(true);
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    const abort = new AbortController();
    setLoading(true);
    request<T>(document, JSON.parse(key) as Variables, abort.signal).then(
      (data) => {
        setState({ data, error: null });
        setLoading(false);
      },
      (error: unknown) => {
        if (abort.signal.aborted) return;
        const failure =
          error instanceof RequestError ? error : new RequestError(String(error), null, 0);
        setState((previous) => ({ data: previous.data, error: failure }));
        setLoading(false);
      },
    );
    return () => abort.abort();
  }, [document, key, generation]);
  const refetch = useCallback(() => setGeneration((value) => value + 1), []);
  return { ...state, loading, refetch };
}

let socket: Client | null = null;

function subscriptionClient(): Client {
  if (socket === null) {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    // The browser sends the session cookie with the upgrade request.
    socket = createClient({ url: `${scheme}//${window.location.host}${GRAPHQL_PATH}`, lazy: true });
  }
  return socket;
}

/** Calls `onData` with each event of a subscription until the returned function is
 * called (or the server ends it: `onEnd` gets the error, if any). */
export function subscribe<T>(
  document: string,
  variables: Variables,
  onData: (data: T) => void,
  onEnd: (error: RequestError | null) => void = () => undefined,
): () => void {
  return subscriptionClient().subscribe<T>(
    { query: document, variables },
    {
      next: (result) => {
        if (result.data) onData(result.data as T);
      },
      error: (error: unknown) => {
        const message = Array.isArray(error)
          ? String((error[0] as { message?: string }).message)
          : error instanceof Error
            ? error.message
            : "The subscription ended";
        onEnd(new RequestError(message, null, 0));
      },
      complete: () => onEnd(null),
    },
  );
}

/** `subscribe` for the life of a component (re-subscribing when `variables` change). */
export function useSubscription<T>(
  document: string,
  variables: Variables | null,
  onData: (data: T) => void,
): void {
  const handler = useRef(onData);
  handler.current = onData;
  const key = variables === null ? null : JSON.stringify(variables);
  useEffect(() => {
    if (key === null) return undefined;
    return subscribe<T>(document, JSON.parse(key) as Variables, (data) => handler.current(data));
  }, [document, key]);
}
