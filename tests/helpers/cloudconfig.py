#!/usr/bin/env python3
"""Read a cloud-config written by lc-cloudinit, for the tests.

  cloudconfig.py json FILE            print it as JSON (for jq)
  cloudconfig.py schema FILE...       validate each with cloud-init's own
                                      schema check (what `cloud-init schema
                                      --config-file` runs), in one process
  cloudconfig.py get FILE EXPR        print a value (EXPR: dotted keys)
  cloudconfig.py content FILE PATH    print the write_files content of PATH
  cloudconfig.py scripts FILE DIR     write every shell script the config
                                      runs (write_files with a shebang,
                                      runcmd entries) into DIR, one a file
  cloudconfig.py vmroot FILE DIR      write every file under DIR, with the
                                      VM's paths moved under DIR too, so the
                                      scripts can run here against fakes
"""
import json
import os
import shlex
import sys

import yaml


def load(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not text.startswith("#cloud-config\n"):
        sys.exit("not a cloud-config: the first line is not #cloud-config")
    return yaml.safe_load(text)


def files(doc):
    return {f["path"]: f for f in doc.get("write_files", [])}


def schema(paths):
    # pylint: disable=import-outside-toplevel
    from cloudinit.config.schema import (SchemaValidationError, get_schema,
                                         validate_cloudconfig_file)
    full = get_schema()
    bad = 0
    for p in paths:
        try:
            validate_cloudconfig_file(p, full)
            print("Valid cloud-config: " + p)
        except SchemaValidationError as e:
            bad += 1
            print("Invalid cloud-config: %s: %s" % (p, e))
    sys.exit(1 if bad else 0)


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "schema":
        schema(sys.argv[2:])
    doc = load(path)
    if cmd == "json":
        print(json.dumps(doc))
    elif cmd == "get":
        v = doc
        for k in sys.argv[3].split("."):
            v = v[int(k)] if isinstance(v, list) else v[k]
        print(v if isinstance(v, str) else json.dumps(v))
    elif cmd == "content":
        sys.stdout.write(files(doc)[sys.argv[3]]["content"])
    elif cmd == "scripts":
        out = sys.argv[3]
        n = 0
        for p, f in files(doc).items():
            if f["content"].startswith("#!/bin/bash"):
                n += 1
                with open(os.path.join(out, os.path.basename(p)), "w",
                          encoding="utf-8") as w:
                    w.write(f["content"])
        for i, c in enumerate(doc.get("runcmd", [])):
            line = c if isinstance(c, str) else shlex.join(c)
            with open(os.path.join(out, "runcmd-%d" % i), "w",
                      encoding="utf-8") as w:
                w.write("#!/bin/sh\n" + line + "\n")
        print(n)
    elif cmd == "vmroot":
        root = sys.argv[3]
        moves = [("/etc/linode-coder", root + "/etc/linode-coder"),
                 ("/usr/local/lib/linode-coder", root + "/lib"),
                 ("/var/lib/linode-coder", root + "/state"),
                 ("/run/linode-coder", root + "/run")]
        # The system files the scripts write or look at, also moved.
        for p in ("/etc/apt/", "/usr/share/keyrings/", "/etc/docker/",
                  "/etc/fstab", "/usr/lib/x86_64-linux-gnu/"):
            moves.append((p, root + "/sys" + p))
            os.makedirs(os.path.dirname(root + "/sys" + p), exist_ok=True)
        for p, f in files(doc).items():
            text, dest = f["content"], p
            for a, b in moves:
                text = text.replace(a, b)
                dest = dest.replace(a, b)
            if not dest.startswith(root):
                dest = root + "/other" + dest
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "w", encoding="utf-8") as w:
                w.write(text)
            os.chmod(dest, int(f.get("permissions", "0644"), 8))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
