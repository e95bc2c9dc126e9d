def test_home_requires_login(client):
    r = client.get("/")
    assert r.status_code == 302
    assert "/login" in r.headers["Location"]


def test_district_sees_all_lists(as_district):
    for ep in ["municipality", "target_group", "room", "post", "partner", "indicator",
               "reporting_period", "monitoring_entry", "submission", "user", "audit_event"]:
        r = as_district.get(f"/{ep}/")
        assert r.status_code == 200, ep
        r = as_district.get(f"/{ep}/new/")
        assert r.status_code in (200, 403), ep
