#!/usr/bin/env python3
"""Generates endpoint_vectors.json: Lambda's endpoint for every region of every AWS
partition, plus a region unknown to botocore that matches each partition's regex, and a
few that match none, each with FIPS and dual-stack off and on, resolved by botocore's
endpoint rule-set resolver from the Lambda rule set and partitions.json it ships.

    pip install botocore
    python3 tests/data/gen_endpoint_vectors.py > tests/data/endpoint_vectors.json

tests/endpoint_vectors.rs compares invoke-stack's resolution with every vector.
"""

import json
import sys

import botocore
from botocore.endpoint_provider import EndpointProvider
from botocore.exceptions import EndpointResolutionError
from botocore.loaders import Loader

# A region botocore does not list yet, matching each partition's regex.
UNKNOWN = {
    "aws": ["eu-future-9", "us-future-1"],
    "aws-cn": ["cn-future-9"],
    "aws-eusc": ["eusc-de-future-9"],
    "aws-iso": ["us-iso-future-9"],
    "aws-iso-b": ["us-isob-future-9"],
    "aws-iso-e": ["eu-isoe-future-9"],
    "aws-iso-f": ["us-isof-future-9"],
    "aws-us-gov": ["us-gov-future-9"],
}
# Regions that match no partition's regex (botocore then uses the aws partition).
NO_PARTITION = ["xx-future-1", "local", "moon-base-1"]


def main():
    loader = Loader()
    ruleset = loader.load_service_model("lambda", "endpoint-rule-set-1")
    partitions = loader.load_data("partitions")
    provider = EndpointProvider(ruleset_data=ruleset, partition_data=partitions)
    regions = []
    for p in partitions["partitions"]:
        for r in sorted(p["regions"]):
            regions.append((p["id"], r, True))
        for r in UNKNOWN.get(p["id"], []):
            regions.append((p["id"], r, False))
    for r in NO_PARTITION:
        regions.append(("none", r, False))
    vectors = []
    for partition, region, known in regions:
        for fips in (False, True):
            for dual in (False, True):
                params = {"Region": region, "UseFIPS": fips, "UseDualStack": dual}
                try:
                    url = provider.resolve_endpoint(**params).url
                    err = None
                except EndpointResolutionError as e:
                    url = None
                    err = str(e)
                vectors.append(
                    {
                        "partition": partition,
                        "region": region,
                        "known": known,
                        "fips": fips,
                        "dual_stack": dual,
                        "url": url,
                        "error": err,
                    }
                )
    json.dump(
        {"botocore": botocore.__version__, "vectors": vectors},
        sys.stdout,
        indent=1,
        sort_keys=True,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
