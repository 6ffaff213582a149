// Who is looking, for the whole page: the frame shows them, pages that need someone send
// an anonymous visitor to sign in (`useSignedIn`), sign-in and sign-out ask again.

import { createContext, useContext, useEffect, type ReactNode } from "react";

import { useQuery } from "../api";
import frameViewer from "../operations/FrameViewer.graphql?raw";
import { currentPath, navigate, paths } from "../router";

export interface ViewerUser {
  id: string;
  username: string;
  name: string | null;
  isAdmin: boolean | null;
}

interface FrameViewerData {
  viewer: { user: ViewerUser } | null;
}

export interface ViewerState {
  /** null: anonymous (or not known yet: see `loading`). */
  user: ViewerUser | null;
  loading: boolean;
  /** Asks again (after signing in or out). */
  refetch: () => void;
}

const ViewerContext = createContext<ViewerState>({
  user: null,
  loading: true,
  refetch: () => undefined,
});

export function ViewerProvider(props: { children: ReactNode }): ReactNode {
  const query = useQuery<FrameViewerData>(frameViewer);
  const state: ViewerState = {
    user: query.data?.viewer?.user ?? null,
    loading: query.loading,
    refetch: query.refetch,
  };
  return <ViewerContext.Provider value={state}>{props.children}</ViewerContext.Provider>;
}

export function useViewer(): ViewerState {
  return useContext(ViewerContext);
}

/** Sends an anonymous visitor to the sign-in page (coming back here after); whether
 * someone is signed in (false while that is not known yet). */
export function useSignedIn(): boolean {
  const viewer = useViewer();
  const anonymous = !viewer.loading && viewer.user === null;
  useEffect(() => {
    if (anonymous) navigate(paths.signIn(currentPath()), { replace: true });
  }, [anonymous]);
  return viewer.user !== null;
}
