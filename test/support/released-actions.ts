// Where the exact copies of released actions live (../shared/actions, read its README):
// actions/cache v4.3.0 and v5.0.4, actions/github-script v8.0.0, each as its release holds it.
import { fileURLToPath } from "node:url";

export const RELEASED_ACTIONS = fileURLToPath(new URL("../../../shared/actions/actions", import.meta.url));
