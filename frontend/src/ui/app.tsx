// The frame every page shares (header, where you are, who you are) and the page the
// address names.

import type { ReactNode } from "react";

import { useRoute, type Route } from "./router";
import { Frame } from "./components/Frame";
import { ViewerProvider } from "./components/Viewer";
import { CandidatePage } from "./pages/Candidate";
import { ComparePage } from "./pages/Compare";
import { JobsPage } from "./pages/Jobs";
import { MembersPage } from "./pages/Members";
import { MlflowLinkPage } from "./pages/MlflowLink";
import { ModelPage } from "./pages/Model";
import { NotFoundPage } from "./pages/NotFound";
import { ProjectPage } from "./pages/Project";
import { ProjectsPage } from "./pages/Projects";
import { SignInPage } from "./pages/SignIn";
import { TokensPage } from "./pages/Tokens";
import { VersionPage } from "./pages/Version";

export function App(): ReactNode {
  const route = useRoute();
  return (
    <ViewerProvider>
      <Frame route={route}>{page(route)}</Frame>
    </ViewerProvider>
  );
}

function page(route: Route): ReactNode {
  switch (route.page) {
    case "projects":
      return <ProjectsPage />;
    case "signIn":
      return <SignInPage next={route.next} />;
    case "tokens":
      return <TokensPage />;
    case "project":
      return <ProjectPage project={route.project} />;
    case "members":
      return <MembersPage project={route.project} />;
    case "jobs":
      return <JobsPage project={route.project} job={route.job} />;
    case "model":
      return <ModelPage project={route.project} model={route.model} />;
    case "version":
      return <VersionPage project={route.project} model={route.model} version={route.version} />;
    case "candidate":
      return <CandidatePage project={route.project} model={route.model} iid={route.iid} />;
    case "compare":
      return <ComparePage project={route.project} ids={route.ids} />;
    case "mlflowLink":
      return <MlflowLinkPage project={route.project} hash={route.hash} />;
    case "notFound":
      return <NotFoundPage />;
  }
}
