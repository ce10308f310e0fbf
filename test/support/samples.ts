// Sample contract values for tests: a valid JobRequest that a test overrides where it cares.
import { randomBytes, randomUUID } from "node:crypto";
import { JobRequest, type JobRequestInput } from "../../src/contract/job-request.js";
import { sealSecrets } from "../../src/contract/sealed-secrets.js";

/** The cluster key the samples are sealed with. */
export const SAMPLE_CLUSTER_KEY = randomBytes(32);

export function sampleJobRequest(over: Partial<JobRequestInput> = {}): JobRequest {
  const id = over.id ?? randomUUID();
  return JobRequest.parse({
    v: 1,
    id,
    source: { forge: "forgejo", instance: "https://forgejo.example", runner: "r-1", ref: { taskId: 7 } },
    replyTo: "forgejo-r-1",
    runsOn: "ubuntu-latest",
    spec: {
      workflow: { name: "ci" },
      job: { id: "build", name: "build" },
      steps: [{ id: "__0", kind: "run", run: { type: 3, expr: "format('echo {0}', matrix.os)" } }],
    },
    contexts: { github: { repository: "o/r" } },
    secrets: sealSecrets({ GITHUB_TOKEN: "t" }, SAMPLE_CLUSTER_KEY, id),
    queuedAt: new Date().toISOString(),
    ...over,
  });
}
