"""An Open311 reporting app against a running `sportello serve`, through the `georeport` client
from PyPI (and `requests`, which it uses, for what it cannot do: posting a report, a token).

Usage: client.py BASE_URL JURISDICTION MARKER. Fails (an AssertionError, exit status 1) when an
answer is not what GeoReport v2 says; prints what it opened as JSON on its last line.
"""

import json
import sys

import requests
from georeport import GeoReport

base, jurisdiction, marker = sys.argv[1], sys.argv[2], sys.argv[3]
root = f"{base}/open311/v2"


def as_list(value):
    """xmltodict gives one repeated element as a dict, several as a list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# The service list and a definition, in both formats, as the client parses them.
for fmt in ("json", "xml"):
    client = GeoReport(root, jurisdiction=jurisdiction, output_format=fmt)
    services = as_list(client.get_service_list())
    codes = [s["service_code"] for s in services]
    assert "segnalazione" in codes and "occupazione-suolo-pubblico" in codes, (fmt, codes)
    for service in services:
        assert service["type"] == "realtime", service
        assert str(service["metadata"]).lower() in ("true", "false"), service
    definition = client.get_service_definition("occupazione-suolo-pubblico")
    assert definition["service_code"] == "occupazione-suolo-pubblico", definition
    attributes = definition["attributes"]
    if fmt == "xml":
        attributes = as_list(attributes["attribute"])
    by_code = {a["code"]: a for a in attributes}
    assert list(by_code) == ["indirizzo", "mq", "dal", "email"], list(by_code)
    assert by_code["mq"]["datatype"] == "number", by_code["mq"]
    assert by_code["dal"]["datatype"] == "datetime", by_code["dal"]
    assert str(by_code["mq"]["required"]).lower() == "true", by_code["mq"]

# A report, posted as the spec says (form-encoded), with the attributes of its service (the form's
# e-mail left out: the reporter's own is used).
posted = requests.post(
    f"{root}/requests.json",
    data={
        "jurisdiction_id": jurisdiction,
        "service_code": "occupazione-suolo-pubblico",
        "lat": "40.5903",
        "long": "17.1127",
        "address_string": f"Via Vittorio Veneto 12 {marker}",
        "description": f"Tavolini sul marciapiede {marker}\nDa due settimane.",
        "first_name": "Rosaria",
        "last_name": f"Lentini {marker}",
        "email": "rosaria.lentini@example.it",
        "attribute[indirizzo]": "Via Vittorio Veneto 12",
        "attribute[mq]": "12,5",
        "attribute[dal]": "2026-12-01",
        "privacy_consent": "true",
    },
    timeout=30,
)
assert posted.status_code == 201, (posted.status_code, posted.text)
created = posted.json()[0]
request_id, token = created["service_request_id"], created["token"]
assert request_id and token and created["access_key"], created

# Followed through the client, in both formats.
for fmt in ("json", "xml"):
    client = GeoReport(root, jurisdiction=jurisdiction, output_format=fmt)
    one = client.get_service_request(request_id)
    assert one["service_request_id"] == request_id, one
    assert one["status"] == "open", one
    assert one["service_code"] == "occupazione-suolo-pubblico", one
    assert one["requested_datetime"] and one["expected_datetime"], one
    listed = as_list(
        client.get_service_requests(service_code="occupazione-suolo-pubblico", status="open")
    )
    assert request_id in [r["service_request_id"] for r in listed], (fmt, len(listed))
    if fmt == "json":
        # (The client cannot read an empty list in XML: xmltodict makes it None.)
        closed = client.get_service_requests(status="closed")
        assert request_id not in [r["service_request_id"] for r in closed], closed
    by_id = as_list(client.get_service_requests(service_request_id=request_id))
    assert [r["service_request_id"] for r in by_id] == [request_id], by_id

# The token stands for the request.
answer = requests.get(
    f"{root}/tokens/{token}.json", params={"jurisdiction_id": jurisdiction}, timeout=30
)
assert answer.status_code == 200, answer.text
assert answer.json() == [{"service_request_id": request_id, "token": token}], answer.text

print(json.dumps({"service_request_id": request_id, "token": token}))
