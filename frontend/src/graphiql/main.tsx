// The GraphiQL page served at GET /graphql: everything it loads comes from this server.

import "graphiql/style.css";
import "./page.css";

import { setNonce } from "get-nonce";
import { GraphiQL } from "graphiql";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";

import { fetcher } from "./fetcher";

// GraphiQL's dialogs add <style> elements; the page's policy admits those carrying the
// nonce the server gave this response.
const nonce = document.querySelector<HTMLMetaElement>('meta[name="csp-nonce"]')?.content;
if (nonce) {
  setNonce(nonce);
}

const container = document.getElementById("graphiql");
if (container === null) {
  throw new Error("The GraphiQL page lacks its #graphiql element");
}
createRoot(container).render(
  <StrictMode>
    <GraphiQL fetcher={fetcher} />
  </StrictMode>,
);
