#!/usr/bin/env python3
"""Keeps deploy/Dockerfile, deploy/hookgate.service and .env.example in step with the crate.

Run by .ci/deploy-check, which passes:
  --metadata FILE   `cargo metadata --format-version 1` output for the Dockerfile's features
  --serve-help FILE `hookgate serve --help`
  --all-help FILE   every subcommand's --help (and the top-level one), concatenated

Checks, each failing with a line saying what to fix:
- the Dockerfile's `cargo build` is `--release --locked --features F --bin B`, B is a binary of
  the package, F are features of it and enable B's required-features; the binary it installs
  and its ENTRYPOINT are B; its RUST_VERSION is at least the package's rust-version and every
  rust-version among the binary's (normal and build) dependencies in Cargo.lock;
- the flags in the Dockerfile's CMD and the unit's ExecStart are flags of `B serve`, and the
  HOOKGATE_* variables they set are variables the binary reads;
- examples/common/mod.rs reads the development secret from the file `hookgate serve` writes;
- .env.example names exactly the variables the binary reads ([env: ...] in its help, plus the
  few it reads itself), in the syntax docker's --env-file, systemd's EnvironmentFile= and
  dotenv all read alike.
"""

import argparse
import json
import re
import shlex
import sys

# Variables the binary reads without clap (so they are not in its help): the secret
# (src/bin/hookgate/secrets.rs), the log filter, `send`'s CA bundle (src/bin/hookgate/send).
READ_DIRECTLY = {
    "ELEVENLABS_WEBHOOK_SECRET": "src/bin/hookgate/secrets.rs",
    "RUST_LOG": "src/bin/hookgate/cli.rs",
    "SSL_CERT_FILE": "src/bin/hookgate/send/client.rs",
}

errors = []


def fail(message):
    errors.append(message)


def dockerfile_instructions(text):
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and not current:
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            logical.append(current.strip())
        current = ""
    pairs = []
    for line in logical:
        word, _, rest = line.partition(" ")
        pairs.append((word.upper(), rest.strip()))
    return pairs


def version(text):
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3]) + (0,) * (
        3 - len(re.findall(r"\d+", text)[:3])
    )


def feature_closure(features, enabled):
    """Every feature of the package that `enabled` turns on (dep: entries left out)."""
    seen, todo = set(), list(enabled)
    while todo:
        name = todo.pop()
        if name in seen or name not in features:
            continue
        seen.add(name)
        for entry in features[name]:
            if entry.startswith("dep:") or "/" in entry:
                continue
            todo.append(entry)
    return seen


def dependency_rust_versions(metadata, root_id):
    """(rust-version, package) of every package the root's library and binaries need:
    normal and build dependencies, transitively (dev-dependencies left out)."""
    packages = {package["id"]: package for package in metadata["packages"]}
    nodes = {node["id"]: node for node in metadata["resolve"]["nodes"]}
    seen, todo = set(), [root_id]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for dep in nodes[current]["deps"]:
            kinds = {kind["kind"] for kind in dep["dep_kinds"]}
            if kinds & {None, "build"}:
                todo.append(dep["pkg"])
    seen.discard(root_id)
    found = []
    for package_id in seen:
        package = packages[package_id]
        if package.get("rust_version"):
            found.append((version(package["rust_version"]), package["name"], package["version"]))
    return found


def help_flags_and_variables(help_text):
    flags = set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", help_text))
    variables = set(re.findall(r"\[env: ([A-Z][A-Z0-9_]*)", help_text))
    return flags, variables


def check_dockerfile(path, metadata, serve_flags, variables):
    text = open(path, encoding="utf-8").read()
    instructions = dockerfile_instructions(text)
    package = next(p for p in metadata["packages"] if p["id"] in metadata["workspace_members"])
    bins = {t["name"]: t for t in package["targets"] if "bin" in t["kind"]}

    builds = [args for word, args in instructions if word == "RUN" and "cargo build" in args]
    if len(builds) != 1:
        fail(f"{path}: expected one RUN with `cargo build`, found {len(builds)}")
        return None
    words = shlex.split(builds[0].split("cargo build", 1)[1].split("&&")[0])
    options, i = {}, 0
    while i < len(words):
        word = words[i]
        if word in ("--release", "--locked"):
            options[word] = True
        elif word in ("--features", "--bin") and i + 1 < len(words):
            options[word] = words[i + 1]
            i += 1
        elif word.startswith("--features=") or word.startswith("--bin="):
            key, _, value = word.partition("=")
            options[key] = value
        else:
            fail(f"{path}: unexpected `{word}` in its cargo build")
        i += 1
    for needed in ("--release", "--locked", "--features", "--bin"):
        if needed not in options:
            fail(f"{path}: its cargo build lacks {needed}")
    binary = options.get("--bin")
    features = [f for f in re.split(r"[ ,]+", options.get("--features", "")) if f]
    if binary not in bins:
        fail(f"{path}: --bin {binary} is not a binary of {package['name']} (it has {sorted(bins)})")
        return None
    unknown = [f for f in features if f not in package["features"]]
    if unknown:
        fail(f"{path}: --features {','.join(unknown)}: no such feature in Cargo.toml")
    enabled = feature_closure(package["features"], features + ["default"])
    missing = [f for f in bins[binary].get("required-features", []) if f not in enabled]
    if missing:
        fail(f"{path}: --features {','.join(features)} does not enable {binary}'s "
             f"required-features {missing}")
    if f"target/release/{binary}" not in builds[0]:
        fail(f"{path}: the build stage does not take target/release/{binary}")
    entrypoints = [args for word, args in instructions if word == "ENTRYPOINT"]
    entrypoint = json_form(path, "ENTRYPOINT", entrypoints[-1]) if entrypoints else None
    if not entrypoint or entrypoint[0] not in (binary, f"/usr/local/bin/{binary}"):
        fail(f"{path}: ENTRYPOINT must run {binary}")

    # The toolchain.
    rust = re.search(r"^ARG RUST_VERSION=(\S+)", text, re.M)
    if not rust:
        fail(f"{path}: no `ARG RUST_VERSION=` default")
    else:
        have = version(rust.group(1))
        if package.get("rust_version") and have < version(package["rust_version"]):
            fail(f"{path}: RUST_VERSION {rust.group(1)} is older than Cargo.toml's "
                 f"rust-version {package['rust_version']}")
        needs = [d for d in dependency_rust_versions(metadata, package["id"]) if d[0] > have]
        for need, name, ver in sorted(needs, reverse=True)[:5]:
            fail(f"{path}: RUST_VERSION {rust.group(1)} is older than the rust-version "
                 f"{'.'.join(map(str, need))} of {name} {ver} in Cargo.lock")

    # What the image runs.
    for word, args in instructions:
        if word == "CMD":
            command = json_form(path, word, args) or []
            if command[:1] == ["serve"]:
                check_flags(path, "CMD", command[1:], serve_flags)
        if word == "ENV":
            for name in re.findall(r"(?:^|\s)([A-Z][A-Z0-9_]*)=", args):
                if name.startswith("HOOKGATE_") and name not in variables:
                    fail(f"{path}: ENV {name} is not a variable hookgate reads")
    return binary


def json_form(path, word, args):
    """The words of an instruction in JSON (exec) form, or None (with a failure)."""
    try:
        words = json.loads(args)
    except ValueError:
        words = None
    if not isinstance(words, list) or not words or not all(isinstance(w, str) for w in words):
        fail(f"{path}: {word} {args} is not in JSON form, [\"program\", \"argument\", ...]")
        return None
    return words


def check_flags(path, where, words, serve_flags):
    for word in words:
        if word.startswith("--"):
            flag = word[2:].split("=", 1)[0]
            if flag not in serve_flags:
                fail(f"{path}: {where} uses --{flag}, which `hookgate serve` does not have")


def check_unit(path, binary, serve_flags, variables):
    text = open(path, encoding="utf-8").read()
    starts = re.findall(r"^ExecStart=(.*)$", text, re.M)
    if len(starts) != 1:
        fail(f"{path}: expected one ExecStart=, found {len(starts)}")
        return
    words = shlex.split(starts[0])
    if words[:2] != [f"/usr/local/bin/{binary}", "serve"]:
        fail(f"{path}: ExecStart= must run `/usr/local/bin/{binary} serve`, not {words[:2]}")
    check_flags(path, "ExecStart=", words[2:], serve_flags)
    for name in re.findall(r"^Environment=([A-Z][A-Z0-9_]*)=", text, re.M):
        if name not in variables:
            fail(f"{path}: Environment={name} is not a variable hookgate reads")


def check_env_example(path, variables):
    listed = set()
    line_syntax = re.compile(r"^([A-Z][A-Z0-9_]*)=([^\s\"'#]*)$")
    for number, line in enumerate(open(path, encoding="utf-8").read().splitlines(), 1):
        if not line.strip():
            continue
        body = line
        if line.startswith("#"):
            body = line[1:].strip()
            if not re.match(r"^[A-Z][A-Z0-9_]*=", body):
                continue  # prose
        match = line_syntax.match(body)
        if not match:
            fail(f"{path}:{number}: not NAME=value (no quotes, spaces or trailing comment): {line!r}")
            continue
        listed.add(match.group(1))
    expected = variables | set(READ_DIRECTLY)
    for name in sorted(expected - listed):
        fail(f"{path}: does not list {name}, which hookgate reads")
    for name in sorted(listed - expected):
        fail(f"{path}: lists {name}, which hookgate does not read")


def check_examples_secret_file():
    """examples/common/mod.rs reads the development secret where `hookgate serve` writes it."""
    pattern = re.compile(r'const DEV_SECRET_FILE: &str = "([^"]+)";')
    names = {}
    for source in ("src/bin/hookgate/secrets.rs", "examples/common/mod.rs"):
        found = pattern.search(open(source, encoding="utf-8").read())
        names[source] = found.group(1) if found else None
    if None in names.values() or len(set(names.values())) != 1:
        fail(f"DEV_SECRET_FILE differs (or is gone): {names}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--metadata", required=True)
    parser.add_argument("--serve-help", required=True)
    parser.add_argument("--all-help", required=True)
    parser.add_argument("--dockerfile", default="deploy/Dockerfile")
    parser.add_argument("--unit", default="deploy/hookgate.service")
    parser.add_argument("--env-example", default=".env.example")
    args = parser.parse_args()

    metadata = json.load(open(args.metadata, encoding="utf-8"))
    serve_flags, _ = help_flags_and_variables(open(args.serve_help, encoding="utf-8").read())
    _, variables = help_flags_and_variables(open(args.all_help, encoding="utf-8").read())
    if len(serve_flags) < 10 or len(variables) < 10:
        fail(f"the help texts show only {len(serve_flags)} serve flags and {len(variables)} "
             "[env: ...] variables: has the help's format changed?")
    for name, source in READ_DIRECTLY.items():
        if name not in open(source, encoding="utf-8").read():
            fail(f"{source} no longer mentions {name}: update READ_DIRECTLY in {sys.argv[0]}")

    binary = check_dockerfile(args.dockerfile, metadata, serve_flags, variables)
    check_unit(args.unit, binary or "hookgate", serve_flags, variables)
    check_env_example(args.env_example, variables)
    check_examples_secret_file()

    for message in errors:
        print(f"deploy check: {message}", file=sys.stderr)
    if errors:
        return 1
    print(f"deploy check: {args.dockerfile}, {args.unit} and {args.env_example} agree with "
          f"Cargo.toml, Cargo.lock and the binary ({len(variables)} variables)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
