#!/usr/bin/env python3
"""Write prometheusrule.yaml (the Prometheus Operator's wrapper) from cohort-rules.yaml.

cohort-rules.yaml is the source (plain rule-file format, checked by promtool); deploy/check.sh
fails when the wrapper's spec.groups differ from it. Run after editing the rules:
    python3 deploy/prometheus/gen-prometheusrule.py
"""
import pathlib

import yaml

HERE = pathlib.Path(__file__).resolve().parent
groups = yaml.safe_load((HERE / "cohort-rules.yaml").read_text())["groups"]
doc = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "PrometheusRule",
    "metadata": {"name": "cohort", "labels": {"app.kubernetes.io/name": "cohort"}},
    "spec": {"groups": groups},
}


class Dumper(yaml.SafeDumper):
    pass


def _str(dumper, s):
    style = "|" if "\n" in s else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)


Dumper.add_representer(str, _str)
header = "# Generated from cohort-rules.yaml by gen-prometheusrule.py: edit that file, not this one.\n"
(HERE / "prometheusrule.yaml").write_text(
    header + yaml.dump(doc, Dumper=Dumper, sort_keys=False, width=120, allow_unicode=True)
)
