"""One layer of the demo diamond: network -> {database, cluster} -> app.

Reads the current outputs of its upstream stacks (from $CASCADE_UPSTREAM_OUTPUTS when the cascade
provides them, otherwise through the API with the deployment's own $CASCADE_TOKEN, the way a stack
reference would) and writes its own outputs to $CASCADE_OUTPUTS. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import urllib.error
import urllib.request

UPSTREAMS = {"network": [], "database": ["network"], "cluster": ["network"], "app": ["database", "cluster"]}


def upstream_outputs(project: str, stack: str) -> dict:
    provided = {}
    path = os.environ.get("CASCADE_UPSTREAM_OUTPUTS")
    if path and os.path.exists(path):
        with open(path) as handle:
            provided = json.load(handle)
    found = {}
    for upstream in UPSTREAMS[project]:
        key = f"{upstream}/{stack}"
        if key in provided:
            found[upstream] = provided[key]
            continue
        url = f"{os.environ['CASCADE_API_URL']}/api/stacks/{os.environ['CASCADE_ORG']}/{upstream}/{stack}/outputs"
        request = urllib.request.Request(url, headers={"Authorization": f"token {os.environ['CASCADE_TOKEN']}"})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own API
                outputs = json.load(response)["outputs"]
        except urllib.error.HTTPError as error:
            sys.exit(f"cannot read outputs of {upstream}/{stack}: HTTP {error.code}")
        if not outputs:
            sys.exit(f"upstream {upstream}/{stack} has no outputs yet: deploy it first")
        found[upstream] = outputs
    return found


def outputs_for(project: str, upstream: dict) -> dict:
    if project == "network":
        vpc = "vpc-" + hashlib.sha256(os.environ["CASCADE_STACK"].encode()).hexdigest()[:8]
        return {"vpcId": vpc, "cidr": "10.0.0.0/16"}
    if project == "database":
        return {
            "endpoint": f"db.{upstream['network']['vpcId']}.internal:5432",
            "password": {"secret": "demo-db-password"},
        }
    if project == "cluster":
        return {"apiServer": f"https://k8s.{upstream['network']['vpcId']}.internal"}
    return {
        "url": "https://app.example.test",
        "database": upstream["database"]["endpoint"],
        "cluster": upstream["cluster"]["apiServer"],
    }


def main() -> None:
    operation = sys.argv[1]
    project, stack = os.environ["CASCADE_PROJECT"], os.environ["CASCADE_STACK"]
    upstream = upstream_outputs(project, stack)
    for name, values in upstream.items():
        print(f"using outputs of {name}/{stack}: {', '.join(sorted(values))}")
    outputs = outputs_for(project, upstream)
    if operation == "preview":
        print(f"{project}/{stack} would expose: {', '.join(sorted(outputs))}")
        return
    print(f"{operation} of {project}/{stack} done")
    if operation == "update":
        with open(os.environ["CASCADE_OUTPUTS"], "w") as handle:
            json.dump(outputs, handle)


if __name__ == "__main__":
    main()
