// The browser session the server keeps: HttpOnly `modelreg_session` (never visible here)
// and the readable `modelreg_csrf`, whose value every cookie-authenticated POST must echo
// as the `X-CSRF-Token` header.

const CSRF_COOKIE = "modelreg_csrf";
const CSRF_HEADER = "X-CSRF-Token";

export function csrfHeaders(cookies: string = document.cookie): Record<string, string> {
  for (const pair of cookies.split(";")) {
    const [name, ...value] = pair.trim().split("=");
    if (name === CSRF_COOKIE) {
      return { [CSRF_HEADER]: decodeURIComponent(value.join("=")) };
    }
  }
  return {};
}
