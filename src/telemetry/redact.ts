// What of a URL may go into a log line or an error message: no password, no query, no fragment.
// Database and broker URLs carry passwords; signed blob URLs and some database URLs carry their
// credentials in the query. Pure; every stage that prints a URL it was given goes through here.

/** `url` fit for logs and messages: the password replaced by ***, the query and fragment dropped. */
export function redactUrl(url: string | URL): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return "(a URL that cannot be parsed)";
  }
  if (u.password) u.password = "***";
  u.search = "";
  u.hash = "";
  return u.toString();
}
