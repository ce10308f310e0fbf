// The engine's pure parts: masking, workflow commands, env files, shells, file patterns.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { EnvFileError, parseEnvFile, parsePathFile } from "../../src/engine/env-files.js";
import { matchFiles } from "../../src/engine/glob.js";
import { Masker, splitMaskHints } from "../../src/engine/masker.js";
import { planShell, ShellError, shellArgv, splitArgs } from "../../src/engine/shell.js";
import { CommandStream, parseCommand, prop } from "../../src/engine/workflow-commands.js";

describe("masker", () => {
  it("masks the matches of a forge's regex mask hint, and ignores hints that would mask nothing or everything", () => {
    const m = new Masker();
    assert.equal(m.addPattern("ghs_[A-Za-z0-9]{8}"), true);
    assert.equal(m.addPattern("(unclosed"), false);
    assert.equal(m.addPattern("x*"), false);
    assert.equal(m.mask("token ghs_abcd1234 and ghs_zzzz9999."), "token *** and ***.");
    assert.equal(m.mask("no token"), "no token");
  });

  it("keeps mask hints out of the secrets context", () => {
    const { secrets, patterns } = splitMaskHints({ API: "v", "::mask::0": "ghs_[a-z]+" });
    assert.deepEqual(secrets, { API: "v" });
    assert.deepEqual(patterns, ["ghs_[a-z]+"]);
  });

  it("masks a secret wherever it appears, and leaves text without secrets alone", () => {
    const m = new Masker();
    m.add("hunter2-secret");
    assert.equal(m.mask("pw=hunter2-secret and hunter2-secret!"), "pw=*** and ***!");
    assert.equal(m.mask("nothing here"), "nothing here");
  });

  it("masks each line of a multi-line secret, so it cannot leak line by line", () => {
    const m = new Masker();
    m.add("-----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----\n");
    assert.equal(m.mask("MIIEvQIBADANBg"), "***");
    assert.equal(m.mask("-----BEGIN KEY-----"), "***");
    assert.equal(m.mask("-----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----"), "***");
  });

  it("does not mask one- and two-character lines of a multi-line secret alone", () => {
    const m = new Masker();
    m.add('{\n  "token": "abcdef123456"\n}');
    assert.equal(m.mask("{ a } b"), "{ a } b");
    assert.equal(m.mask('"token": "abcdef123456"'), "***");
  });

  it("masks the secret's base64 at every alignment, its JSON escaping and its URL encoding", () => {
    const secret = 'p@ss"word/with spaces';
    const m = new Masker();
    m.add(secret);
    for (const prefix of ["", "x", "xy"])
      for (const suffix of ["", "!", "!?"]) {
        const masked = m.mask(Buffer.from(prefix + secret + suffix).toString("base64"));
        assert.ok(
          masked.includes("***"),
          `prefix ${JSON.stringify(prefix)}, suffix ${JSON.stringify(suffix)}: ${masked}`,
        );
        assert.ok(masked.replace("***", "").length <= 12, `only the groups at the edges stay: ${masked}`);
      }
    assert.equal(m.mask(JSON.stringify({ v: secret })), '{"v":"***"}');
    assert.equal(m.mask(`https://x/?q=${encodeURIComponent(secret)}`), "https://x/?q=***");
  });

  it("prefers the longest match so no part of a longer secret survives", () => {
    const m = new Masker();
    m.add("abc");
    m.add("abcdef");
    assert.equal(m.mask("abcdef abc"), "*** ***");
    assert.equal(m.reveals("xxabcxx"), true);
    assert.equal(m.reveals("ab"), false);
  });

  it("masks values that contain regular expression characters literally", () => {
    const m = new Masker();
    m.add("a.b*c(d)[e]$");
    assert.equal(m.mask("a.b*c(d)[e]$ axbbc"), "*** axbbc");
  });
});

describe("workflow commands", () => {
  it("parses name, properties and data with GitHub's escapes", () => {
    const c = parseCommand("::error file=app.js,line=10,title=A%2C B%3A C::fail%0Aed 100%25");
    assert.ok(c);
    assert.equal(c.name, "error");
    assert.equal(prop(c, "FILE"), "app.js");
    assert.equal(prop(c, "line"), "10");
    assert.equal(prop(c, "title"), "A, B: C");
    assert.equal(c.data, "fail\ned 100%");
  });

  it("accepts leading whitespace and the legacy ##[…] form", () => {
    assert.equal(parseCommand("   ::debug::x")?.data, "x");
    const legacy = parseCommand("prefix ##[set-output name=a;]b%3Bc");
    assert.deepEqual(legacy && { name: legacy.name, props: legacy.properties, data: legacy.data }, {
      name: "set-output",
      props: { name: "a" },
      data: "b;c",
    });
  });

  it("treats unknown names and malformed lines as output", () => {
    assert.equal(parseCommand("::unknown::x"), undefined);
    assert.equal(parseCommand("::error only one marker"), undefined);
    assert.equal(parseCommand("text ::error::x"), undefined);
  });

  it("suspends command processing between stop-commands and its token", () => {
    const s = new CommandStream();
    assert.equal(s.accept("::set-output name=a::1").kind, "command");
    assert.deepEqual(s.accept("::stop-commands::pause-token-1"), {
      kind: "stopped",
      text: "::stop-commands::pause-token-1",
      token: "pause-token-1",
    });
    assert.deepEqual(s.accept("::set-output name=a::2"), { kind: "output", text: "::set-output name=a::2" });
    assert.deepEqual(s.accept("::add-mask::secret"), { kind: "output", text: "::add-mask::secret" });
    assert.equal(s.accept("::other-token::").kind, "output");
    assert.equal(s.accept("::PAUSE-TOKEN-1::").kind, "resumed");
    assert.equal(s.accept("::set-output name=a::3").kind, "command");
  });

  it("refuses a stop token that is empty or a command's name", () => {
    assert.equal(new CommandStream().accept("::stop-commands::").kind, "invalid-stop");
    assert.equal(new CommandStream().accept("::stop-commands::set-output").kind, "invalid-stop");
    assert.equal(new CommandStream(true).accept("::stop-commands::set-output").kind, "stopped");
  });
});

describe("env files", () => {
  it("reads NAME=VALUE lines, keeping '=' in values and skipping empty lines", () => {
    assert.deepEqual(parseEnvFile("A=1\n\nB=x=y\nC=\n"), [
      ["A", "1"],
      ["B", "x=y"],
      ["C", ""],
    ]);
  });

  it("reads heredocs with any delimiter, multi-line values and a last line without newline", () => {
    const text = "K<<EOF\nline one\nline two\nEOF\nU<<ghadelimiter_b8273c6d\nv\nghadelimiter_b8273c6d\nE<<X\nX";
    assert.deepEqual(parseEnvFile(text), [
      ["K", "line one\nline two"],
      ["U", "v"],
      ["E", ""],
    ]);
  });

  it("picks the form that comes first when a line has both = and <<", () => {
    assert.deepEqual(parseEnvFile("A=b<<c\n"), [["A", "b<<c"]]);
    assert.deepEqual(parseEnvFile("A<<=\nv\n=\n"), [["A", "v"]]);
  });

  it("refuses what GitHub refuses, saying why", () => {
    assert.throws(() => parseEnvFile("=v\n"), /Name must not be empty/);
    assert.throws(() => parseEnvFile("K<<EOF\nno end\n"), /Matching delimiter not found 'EOF'/);
    assert.throws(() => parseEnvFile("K<<EOF\nlast"), EnvFileError);
    assert.throws(() => parseEnvFile("just text\n"), /Invalid format 'just text'/);
  });

  it("reads path files line by line", () => {
    assert.deepEqual(parsePathFile("/a\n\n/b c\r\n"), ["/a", "/b c"]);
  });
});

describe("shells", () => {
  const host = { hasBash: true, python: "python3" };
  it("defaults to bash -e, or sh -e without bash, as GitHub does", () => {
    assert.deepEqual(shellArgv(planShell(undefined, "x", host), "/t/s.sh"), ["bash", "-e", "/t/s.sh"]);
    assert.deepEqual(shellArgv(planShell(undefined, "x", { ...host, hasBash: false }), "/t/s.sh"), [
      "sh",
      "-e",
      "/t/s.sh",
    ]);
  });

  it("uses GitHub's flags for the built-in shells and their extensions", () => {
    const bash = planShell("bash", "x", host);
    assert.deepEqual(shellArgv(bash, "/s.sh"), ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "/s.sh"]);
    assert.equal(bash.extension, ".sh");
    assert.deepEqual(shellArgv(planShell("sh", "x", host), "/s.sh"), ["sh", "-e", "/s.sh"]);
    const py = planShell("python", "x", host);
    assert.deepEqual(shellArgv(py, "/s.py"), ["python3", "/s.py"]);
    assert.equal(py.extension, ".py");
    const pwsh = planShell("pwsh", "Write-Host hi", host);
    assert.deepEqual(shellArgv(pwsh, "/s.ps1"), ["pwsh", "-command", ". '/s.ps1'"]);
    assert.match(pwsh.script, /^\$ErrorActionPreference = 'stop'\nWrite-Host hi\n/);
  });

  it("runs custom shells with the script's path in place of {0}", () => {
    assert.deepEqual(shellArgv(planShell("perl -w {0}", "x", host), "/s"), ["perl", "-w", "/s"]);
    assert.deepEqual(shellArgv(planShell("cp {0} action.yml", "x", host), "/s"), ["cp", "/s", "action.yml"]);
    assert.equal(planShell("node {0}", "x", host).extension, "");
  });

  it("refuses a custom shell without {0}, naming what to write", () => {
    assert.throws(
      () => planShell("perl", "x", host),
      (e: unknown) => e instanceof ShellError && /\{0\}/.test(e.message),
    );
  });

  it("splits shell arguments with quotes and escapes", () => {
    assert.deepEqual(splitArgs(`-c "a b" 'c d' e\\ f ""`), ["-c", "a b", "c d", "e f", ""]);
    assert.throws(() => splitArgs(`"open`), ShellError);
  });
});

describe("file patterns", () => {
  const files = [
    "package-lock.json",
    "a/package-lock.json",
    "a/b/c.lock",
    ".hidden/x.lock",
    "src/main.ts",
    "src/util/x.ts",
  ];
  it("matches ** at any depth, * within a segment, and dot files", () => {
    assert.deepEqual(matchFiles(files, ["**/package-lock.json"]), ["package-lock.json", "a/package-lock.json"]);
    assert.deepEqual(matchFiles(files, ["**/*.lock"]), ["a/b/c.lock", ".hidden/x.lock"]);
    assert.deepEqual(matchFiles(files, ["src/*.ts"]), ["src/main.ts"]);
    assert.deepEqual(matchFiles(files, ["src"]), ["src/main.ts", "src/util/x.ts"]);
  });

  it("lets later ! patterns exclude, and newline-separated patterns count as several", () => {
    assert.deepEqual(matchFiles(files, ["**/*.ts\n!src/util/**"]), ["src/main.ts"]);
    assert.deepEqual(matchFiles(files, ["src/?ain.ts", "a/[bc]/*"]), ["a/b/c.lock", "src/main.ts"]);
  });
});
