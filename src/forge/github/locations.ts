// Classic (VSS) resource locations (spec 3.8): route templates are read from the tenant's
// connectionData and expanded with route values; the templates below are only the fallback for a
// tenant that does not list one. Expansion is pure; discovery is one anonymous GET.
import type { HttpClient } from "./http.js";
import { joinUrl } from "./urls.js";
import { ConnectionData } from "./wire.js";

/** Location GUIDs of the resources a runner uses. */
export const LOCATION = {
  pools: "a8c47e17-4d56-4a56-92bb-de7ea7dc65be",
  agents: "e298ef32-5878-4cab-993c-043836571f42",
  sessions: "134e239e-2df3-4794-a6f6-24f1f19ec8dc",
  messages: "c3a054f6-7a8a-49c0-944e-3a8e5d7adfd7",
  jobRequests: "fc825784-c92a-4299-9221-998a02d1b54f",
  timelineRecords: "8893bc5b-35b2-4be7-83cb-99e683551db4",
  recordFeed: "858983e4-19bd-4c5e-864c-507b59b58b12",
  logs: "46f5667d-263a-4684-91b1-dff7fdcf64e2",
  planEvents: "557624af-b29e-4c20-8ab0-0399d2204f3f",
} as const;
export type LocationId = (typeof LOCATION)[keyof typeof LOCATION];

interface Route {
  readonly area: string;
  readonly resource: string;
  readonly template: string;
}

const HUB = "{scopeIdentifier}/_apis/{area}/hubs/{hubName}/plans/{planId}";
const FALLBACK: Readonly<Record<LocationId, Route>> = {
  [LOCATION.pools]: { area: "distributedtask", resource: "pools", template: "_apis/{area}/pools/{poolId}" },
  [LOCATION.agents]: {
    area: "distributedtask",
    resource: "agents",
    template: "_apis/{area}/pools/{poolId}/agents/{agentId}",
  },
  [LOCATION.sessions]: {
    area: "distributedtask",
    resource: "sessions",
    template: "_apis/{area}/pools/{poolId}/sessions/{sessionId}",
  },
  [LOCATION.messages]: {
    area: "distributedtask",
    resource: "messages",
    template: "_apis/{area}/pools/{poolId}/messages/{messageId}",
  },
  [LOCATION.jobRequests]: {
    area: "distributedtask",
    resource: "jobrequests",
    template: "_apis/{area}/pools/{poolId}/jobrequests/{requestId}",
  },
  [LOCATION.timelineRecords]: {
    area: "distributedtask",
    resource: "records",
    template: `${HUB}/timelines/{timelineId}/records`,
  },
  [LOCATION.recordFeed]: {
    area: "distributedtask",
    resource: "feed",
    template: `${HUB}/timelines/{timelineId}/records/{recordId}/feed`,
  },
  [LOCATION.logs]: { area: "distributedtask", resource: "logs", template: `${HUB}/logs/{logId}` },
  [LOCATION.planEvents]: { area: "distributedtask", resource: "events", template: `${HUB}/events` },
};

export type RouteValues = Readonly<Record<string, string | number | undefined>>;

/**
 * Expands a VSS route template as the official SDK's ReplaceRouteValues does: `{area}`,
 * `{resource}` and the route values fill their placeholders (`{*name}` too, matched
 * case-insensitively); a placeholder without a value contributes nothing, and a segment left empty
 * is dropped. `{{` and `}}` are literal braces.
 */
export function expandRoute(template: string, area: string, resource: string, values: RouteValues): string {
  const all = new Map<string, string | number | undefined>();
  for (const [k, v] of Object.entries(values)) all.set(k.toLowerCase(), v);
  all.set("area", area);
  all.set("resource", resource);
  const segments: string[] = [];
  for (const segment of template.split("/")) {
    const filled = segment
      .replace(/\{\{/g, "\u0000")
      .replace(/\}\}/g, "\u0001")
      .replace(/\{(\*?)([^}]+)\}/g, (_m, star: string, name: string) => {
        const v = all.get(name.toLowerCase());
        if (v === undefined || v === "") return "";
        // A wildcard value may span segments (`a/b`); ordinary values are one segment.
        return star ? String(v) : encodeURIComponent(String(v));
      })
      .replace(/\u0000/g, "{")
      .replace(/\u0001/g, "}");
    if (filled !== "") segments.push(filled);
  }
  return segments.join("/");
}

export class Locations {
  readonly #tenantUrl: string;
  readonly #routes: ReadonlyMap<string, Route>;

  private constructor(tenantUrl: string, routes: ReadonlyMap<string, Route>) {
    this.#tenantUrl = tenantUrl;
    this.#routes = routes;
  }

  /** The hard-coded routes only (tests of pure code, or a tenant that cannot be asked). */
  static fallback(tenantUrl: string): Locations {
    return new Locations(tenantUrl, new Map());
  }

  /** Reads the tenant's route templates; keeps the fallback for any it does not list or when asking fails. */
  static async discover(http: HttpClient, tenantUrl: string, signal?: AbortSignal): Promise<Locations> {
    const url = joinUrl(tenantUrl, "_apis/connectionData");
    url.searchParams.set("connectOptions", "1");
    url.searchParams.set("lastChangeId", "-1");
    url.searchParams.set("lastChangeId64", "-1");
    const data = await http.json(
      { what: "read the Actions service's resource locations", method: "GET", url, timeoutMs: 30_000, signal },
      ConnectionData,
    );
    const routes = new Map<string, Route>();
    for (const d of data.locationServiceData?.serviceDefinitions ?? [])
      if (d.resourceVersion > 0 && d.relativePath)
        routes.set(d.identifier.toLowerCase(), {
          area: d.serviceType,
          resource: d.displayName,
          template: d.relativePath,
        });
    return new Locations(tenantUrl, routes);
  }

  url(id: LocationId, values: RouteValues, query: Readonly<Record<string, string>> = {}): URL {
    const route = this.#routes.get(id) ?? FALLBACK[id];
    const url = joinUrl(this.#tenantUrl, expandRoute(route.template, route.area, route.resource, values));
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    return url;
  }
}
