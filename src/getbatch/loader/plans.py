"""Register, describe and list epoch plans over HTTP (POST/GET /v1/ml/epochs)."""
import requests

from .fetch import BatchFailed


def _answer(r):
    if r.status_code != 200:
        raise BatchFailed(f"{r.request.method} {r.url} answered {r.status_code}: "
                          f"{r.text.strip()[:300]}", r.status_code)
    return r.json()


def create_plan(url, timeout=600, **spec):
    """Register a plan (epochs/spec.py has the fields); its record, with "id"."""
    return _answer(requests.post(f"{url}/v1/ml/epochs", json=spec, timeout=timeout))


def describe_plan(url, plan_id, timeout=30):
    return _answer(requests.get(f"{url}/v1/ml/epochs/{plan_id}", timeout=timeout))


def list_plans(url, timeout=30):
    return _answer(requests.get(f"{url}/v1/ml/epochs", timeout=timeout))["plans"]
