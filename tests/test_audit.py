"""The audit trail records every change, export and login; nobody can alter it."""

from __future__ import annotations

from sqlalchemy import select

from kim_admin.extensions import db
from models import AuditEvent, Municipality, Room, User


def events(app, **where):
    with app.app_context():
        query = select(AuditEvent).order_by(AuditEvent.id)
        for key, value in where.items():
            query = query.where(getattr(AuditEvent, key) == value)
        return db.session.scalars(query).all()


def test_create_update_delete_through_views(app, as_district, accounts):
    with app.app_context():
        town = db.session.scalar(select(Municipality).where(Municipality.name == "Arnsberg"))
        town_id = town.id
    as_district.post("/room/new/", {"municipality": town_id, "name": "Raum A", "kind": "buero"})
    with app.app_context():
        room_id = db.session.scalar(select(Room.id))
    as_district.post(
        f"/room/edit/?id={room_id}",
        {"municipality": town_id, "name": "Raum B", "kind": "buero", "seats": "4"},
    )
    as_district.post("/room/delete/", {"id": room_id})

    trail = events(app, object_type="room")
    assert [e.action for e in trail] == ["create", "update", "delete"]
    created, updated, deleted = trail
    assert all(e.user_email == accounts.district for e in trail)
    assert all(e.municipality_id == town_id for e in trail)
    assert all(e.object_id == str(room_id) for e in trail)
    assert created.new_values["name"] == "Raum A" and created.old_values is None
    assert updated.old_values == {"name": "Raum A", "seats": None}
    assert updated.new_values == {"name": "Raum B", "seats": 4}
    assert deleted.old_values["name"] == "Raum B" and deleted.new_values is None


def test_many_to_many_change_logged(app, as_district):
    with app.app_context():
        ids = [m.id for m in db.session.scalars(select(Municipality).limit(2))]
    as_district.post("/partner/new/", {"name": "P", "kind": "jmd", "municipalities": ids[:1]})
    with app.app_context():
        from models import Partner

        partner_id = db.session.scalar(select(Partner.id))
    as_district.post(
        f"/partner/edit/?id={partner_id}", {"name": "P", "kind": "jmd", "municipalities": ids}
    )
    update = events(app, object_type="partner", action="update")[0]
    assert len(update.old_values["municipalities"]) == 1
    assert len(update.new_values["municipalities"]) == 2


def test_password_never_in_trail(app, as_district):
    as_district.post(
        "/user/new/",
        {
            "email": "neu@test.example",
            "role": "steering_group",
            "active": "y",
            "new_password": "ein-gutes-passwort",
        },
    )
    created = events(app, object_type="user", action="create")[-1]
    assert created.new_values["password_hash"] == "***"
    assert created.new_values["session_token"] == "***"
    with app.app_context():
        everything = " ".join(
            str(e.new_values) + str(e.old_values) for e in db.session.scalars(select(AuditEvent))
        )
        user = db.session.scalar(select(User).where(User.email == "neu@test.example"))
        assert user.password_hash not in everything
        assert "ein-gutes-passwort" not in everything


def test_export_audited(app, as_district, accounts):
    response = as_district.get("/room/export/csv/?search=Raum")
    assert response.status_code == 200
    exports = events(app, action="export")
    assert len(exports) == 1
    assert exports[0].object_type == "room"
    assert exports[0].new_values == {"format": "csv", "filter": "search=Raum"}
    assert exports[0].user_email == accounts.district


def test_cli_changes_audited(app):
    runner = app.test_cli_runner()
    runner.invoke(
        args=["users", "create", "c@test.example", "--role", "steering_group", "--password-stdin"],
        input="ein-gutes-passwort\n",
    )
    created = events(app, object_type="user", action="create")
    assert created and created[0].user_email == "Kommandozeile"


def test_audit_list_filters(app, as_district, accounts):
    as_district.get("/room/export/csv/")
    page = as_district.get("/audit_event/?flt1_0=export").get_data(as_text=True)
    assert "export" in page
    listing = as_district.get("/audit_event/").get_data(as_text=True)
    for label in ("Zeitpunkt", "Benutzer", "Aktion", "Objekttyp"):
        assert label in listing


def test_rolled_back_change_not_logged(app):
    with app.app_context():
        town = db.session.scalars(select(Municipality)).first()
        db.session.add(Room(name="Nie", municipality=town, kind="buero"))
        db.session.flush()
        db.session.rollback()
        db.session.add(AuditEvent(action="marker"))
        db.session.commit()
        assert (
            db.session.scalars(
                select(AuditEvent.action).where(AuditEvent.object_type == "room")
            ).all()
            == []
        )
        assert "marker" in db.session.scalars(select(AuditEvent.action)).all()
