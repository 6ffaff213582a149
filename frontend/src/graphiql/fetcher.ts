// GraphiQL's requests: POST /graphql on this origin, with the session cookie, its CSRF
// header, and whatever the headers editor holds (e.g. `Authorization: Bearer <token>`).

import type { GraphiQLProps } from "graphiql";

import { csrfHeaders } from "../shared/session";

export const GRAPHQL_PATH = "/graphql";

export const fetcher: GraphiQLProps["fetcher"] = async (params, options) => {
  const response = await fetch(GRAPHQL_PATH, {
    method: "POST",
    credentials: "same-origin",
    headers: {
      Accept: "application/json",
      "Content-Type": "application/json",
      ...csrfHeaders(),
      ...options?.headers,
    },
    body: JSON.stringify(params),
  });
  return response.json();
};
