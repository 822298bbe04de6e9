#!/usr/bin/env python3
"""Extract the request schemas the fake Linode API checks into schemas.json.

Run once after the spec changes:

    python3 tests/servers/extract_schemas.py [path/to/openapi.yaml]

The spec is 3.6 MB of YAML and takes a second or more to parse, so api.py
reads this small JSON file instead and starts at once.

The spec's schemas are OpenAPI 3.0, not plain JSON Schema, and a validator
taking them literally would reject valid requests.  So this script:

  * merges `allOf` parts into one object schema.  The spec puts
    `additionalProperties: false` on one part, which under JSON Schema would
    reject every property declared in the other parts (label, region, ...);
  * turns `nullable: true` into a `"null"` member of `type`;
  * drops readOnly properties (id, created, ...), which a create body never
    carries, and the documentation keys (description, example, x-*);
  * moves `required` that the spec hangs on an array schema (firewall
    `rules.inbound.required`) into the array's `items`, where it was meant;
  * allows a few newer create fields that v4.189.0 predates but the live
    API and current SDKs send (see reference/linode-api.md section 2).

It also records which fields each list endpoint may filter on (the spec
marks them "__Filterable__"), for the X-Filter checks.
"""

import json
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_SPEC = os.path.join(os.path.dirname(REPO), "shared", "fixtures",
                            "linode", "openapi.yaml")

DOC_KEYS = {"description", "example", "examples", "format", "deprecated",
            "writeOnly", "externalDocs", "title"}

# Create-body fields newer than the v4.189.0 spec; the live API accepts them.
INSTANCE_EXTRAS = {
    "disk_encryption": {"type": "string", "enum": ["enabled", "disabled"]},
    "maintenance_policy": {"type": "string"},
    "interface_generation": {"type": "string",
                             "enum": ["legacy_config", "linode"]},
    "network_helper": {"type": "boolean"},
    "ipv4": {"type": "array", "items": {"type": "string"}},
    "kernel": {"type": "string"},
    "boot_size": {"type": "integer"},
}

LISTS = {
    "instances": "/{apiVersion}/linode/instances",
    "firewalls": "/{apiVersion}/networking/firewalls",
    "volumes": "/{apiVersion}/volumes",
    "types": "/{apiVersion}/linode/types",
    "regions": "/{apiVersion}/regions",
    "images": "/{apiVersion}/images",
    "tokens": "/{apiVersion}/profile/tokens",
    "vpcs": "/{apiVersion}/vpcs",
}


def merge(a, b):
    """Merge schema b into a copy of a: union of properties and required."""
    out = dict(a)
    for key, val in b.items():
        if key == "properties":
            props = dict(out.get("properties", {}))
            for name, sub in val.items():
                props[name] = merge(props[name], sub) if name in props else sub
            out["properties"] = props
        elif key == "required":
            out["required"] = sorted(set(out.get("required", [])) | set(val))
        elif key not in out:
            out[key] = val
    return out


def clean(schema):
    """Return schema as plain JSON Schema (see the module comment)."""
    if isinstance(schema, list):
        return [clean(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    s = dict(schema)
    for part in s.pop("allOf", []):
        s = merge(s, part)
    s = {k: v for k, v in s.items()
         if k not in DOC_KEYS and not k.startswith("x-")}
    if s.pop("nullable", False) and "type" in s:
        s["type"] = [s["type"], "null"]
    if "properties" in s:
        s["properties"] = {k: clean(v) for k, v in s["properties"].items()
                           if not (isinstance(v, dict) and v.get("readOnly"))}
        if "required" in s:
            s["required"] = [r for r in s["required"] if r in s["properties"]]
    s.pop("readOnly", None)
    if "items" in s:
        s["items"] = clean(s["items"])
    if s.get("type") == "array" and "required" in s:
        items = dict(s.get("items", {}))
        items["required"] = s.pop("required")
        s["items"] = items
    # maxLength on an object (stackscript_data) means nothing in JSON Schema.
    if s.get("type") == "object":
        s.pop("maxLength", None)
    return s


def request_schema(paths, path, method="post"):
    body = paths[path][method]["requestBody"]
    return clean(body["content"]["application/json"]["schema"])


def filterable(schema, prefix=""):
    """Names (dotted for nested objects) the spec marks __Filterable__."""
    found = []
    if not isinstance(schema, dict):
        return found
    for part in schema.get("allOf", []):
        found += filterable(part, prefix)
    for name, sub in (schema.get("properties") or {}).items():
        if not isinstance(sub, dict):
            continue
        if "__Filterable__" in (sub.get("description") or ""):
            found.append(prefix + name)
        if sub.get("type") == "object" or "allOf" in sub:
            found += filterable(sub, prefix + name + ".")
    return found


def list_item(schema):
    if "allOf" in schema:
        for part in schema["allOf"]:
            item = list_item(part)
            if item is not None:
                return item
    data = (schema.get("properties") or {}).get("data")
    return data["items"] if data else None


def main():
    spec_path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_SPEC
    with open(spec_path, encoding="utf-8") as f:
        spec = yaml.load(f, Loader=getattr(yaml, "CSafeLoader",
                                           yaml.SafeLoader))
    paths = spec["paths"]

    inst = request_schema(paths, "/{apiVersion}/linode/instances")
    inst["properties"].update(INSTANCE_EXTRAS)
    pg = inst["properties"].get("placement_group", {}).get("properties")
    if pg is not None:
        pg["compliant_only"] = {"type": "boolean"}
    fw = request_schema(paths, "/{apiVersion}/networking/firewalls")
    vol = request_schema(paths, "/{apiVersion}/volumes")
    tok = request_schema(paths, "/{apiVersion}/profile/tokens")
    rules = request_schema(
        paths, "/{apiVersion}/networking/firewalls/{firewallId}/rules", "put")
    vpc = request_schema(paths, "/{apiVersion}/vpcs")
    subnet = request_schema(paths, "/{apiVersion}/vpcs/{vpcId}/subnets")

    filters = {}
    for name, path in LISTS.items():
        resp = paths[path]["get"]["responses"]["200"]
        item = list_item(resp["content"]["application/json"]["schema"])
        filters[name] = sorted(set(filterable(item)))

    out = {
        "comment": "Generated by tests/servers/extract_schemas.py from "
                   "openapi.yaml; do not edit by hand.",
        "spec_version": spec["info"]["version"],
        "requests": {
            "POST /linode/instances": inst,
            "POST /networking/firewalls": fw,
            "POST /volumes": vol,
            "POST /profile/tokens": tok,
            "PUT /networking/firewalls/rules": rules,
            "POST /vpcs": vpc,
            "POST /vpcs/subnets": subnet,
        },
        "filterable": filters,
    }
    dest = os.path.join(HERE, "schemas.json")
    tmp = dest + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, dest)
    print(f"wrote {dest} (spec {out['spec_version']})")


if __name__ == "__main__":
    main()
