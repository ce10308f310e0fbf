// The egress policy decides on resolved addresses: the host never, private networks only by exception.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BadNetworkError, egressPolicy, judgeAddress, parseNetwork } from "../../src/egress/policy.js";

const policy = egressPolicy({
  denyNetworks: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"],
  allowNetworks: ["10.9.8.0/24"],
});
const host = ["127.0.0.1", "192.0.2.2", "fd00::2", "fe80::fc:ff:fe00:1"];
const why = (address: string, forge = false) => {
  const v = judgeAddress(address, policy, host, forge);
  return v.ok ? "ok" : v.why;
};

describe("egress policy", () => {
  it("lets jobs reach public addresses", () => {
    assert.equal(why("93.184.215.14"), "ok");
    assert.equal(why("2606:2800:21f:cb07:6820:80da:af6b:8b2c"), "ok");
    assert.equal(why("198.18.4.2"), "ok");
  });

  it("never lets a job reach the host: loopback, its own addresses, in any spelling", () => {
    assert.match(why("127.0.0.1"), /loopback address of the gnomon host/);
    assert.match(why("127.1.2.3"), /loopback/);
    assert.match(why("::1"), /loopback/);
    assert.match(why("::ffff:127.0.0.1"), /127\.0\.0\.1 is a loopback/);
    assert.match(why("0.0.0.0"), /unspecified/);
    assert.match(why("192.0.2.2"), /192\.0\.2\.2 is an address of the gnomon host/);
    assert.match(why("fd00:0:0::2"), /address of the gnomon host/);
    assert.match(why("::ffff:192.0.2.2"), /address of the gnomon host/);
  });

  it("never lets a job reach link-local (cloud metadata) or multicast addresses", () => {
    assert.match(why("169.254.169.254"), /link-local address \(cloud metadata/);
    assert.match(why("fe80::1"), /link-local/);
    assert.match(why("224.0.0.251"), /multicast/);
    assert.match(why("255.255.255.255"), /reserved or broadcast/);
  });

  it("keeps the operator's private networks from jobs, naming the network and the setting", () => {
    assert.equal(
      why("10.1.2.3"),
      "10.1.2.3 is in 10.0.0.0/8, which this host keeps from jobs (orchestrator.egress.denyNetworks)",
    );
    assert.match(why("172.20.0.5"), /172\.16\.0\.0\/12/);
    assert.match(why("192.168.1.10"), /192\.168\.0\.0\/16/);
    assert.match(why("100.100.1.1"), /100\.64\.0\.0\/10/);
    assert.match(why("fd12::5"), /fc00::\/7/);
  });

  it("lets an allowed network through a denied one, but never the host", () => {
    assert.equal(why("10.9.8.7"), "ok");
    const everything = egressPolicy({ denyNetworks: [], allowNetworks: ["0.0.0.0/0", "::/0"] });
    assert.equal(judgeAddress("127.0.0.1", everything, host).ok, false);
    assert.equal(judgeAddress("192.0.2.2", everything, host).ok, false);
  });

  it("lets the job's own forge through private networks, but not on the host", () => {
    assert.equal(why("192.168.1.10", true), "ok");
    assert.match(why("127.0.0.1", true), /loopback/);
    assert.match(why("192.0.2.2", true), /gnomon host/);
  });

  it("refuses what is not an address", () => {
    assert.match(why("localhost"), /not an IP address/);
  });

  it("reads networks as address/prefix and says the form otherwise", () => {
    assert.deepEqual(parseNetwork("10.0.0.0/8"), { address: "10.0.0.0", prefix: 8, family: "ipv4" });
    assert.deepEqual(parseNetwork("fc00::/7"), { address: "fc00::", prefix: 7, family: "ipv6" });
    for (const bad of ["10.0.0.0", "10.0.0.0/33", "example.com/8", "::/129", ""])
      assert.throws(() => parseNetwork(bad), BadNetworkError);
    assert.throws(() => parseNetwork("10.0.0/8"), /write an address and a prefix length, e.g. "10.0.0.0\/8"/);
  });
});
