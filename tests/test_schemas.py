"""Request validation errors name the customer and the field, however many there are."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from pydantic import ValidationError, create_model

from crm_ltv.serving.schemas import ScoreRequest


def _errors(body: object) -> list[tuple[tuple, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(ValidationError) as caught:
        ScoreRequest.model_validate_json(raw)
    return [(e["loc"], e["msg"]) for e in caught.value.errors()]


def test_every_error_inside_a_customer_names_it():
    errors = _errors(
        {
            "customers": [
                {"customer_id": "ok", "as_of": "2025-01-01", "transactions": []},
                {
                    "customer_id": "c1",
                    "as_of": "2025-01-01",
                    "transactions": [
                        {"timestamp": "2024-06-01", "amount": "forty"},
                        {"amount": 1.0},
                    ],
                },
                {"customer_id": "c2"},
                5,
                {"as_of": "2025-01-01", "transactions": []},
                {"customer_id": "c3", "as_of": "2025-01-01", "transactions": [],
                 "contacts": [{"action": "thank_you", "sent_at": "2025-02-01"}]},
            ]
        }
    )  # fmt: skip
    assert errors == [
        (
            ("customers", 1),
            "customer 'c1': transactions.0.amount: Input should be a valid number: 'forty' is "
            "text; send a JSON number, without quotes",  # no decimal mark to speak of
        ),
        (("customers", 1), "customer 'c1': transactions.1.timestamp: Field required"),
        (
            ("customers", 2),
            "customer 'c2': give exactly one of transactions (with as_of) or features",
        ),
        (("customers", 3), "customer (no customer_id): Input should be an object"),
        (("customers", 4), "customer (no customer_id): customer_id: Field required"),
        (
            ("customers", 5),
            "customer 'c3': contacts.0.sent_at: 2025-02-01T00:00:00 is after as_of "
            "2025-01-01T00:00:00 (times given with a zone are shown in UTC)",
        ),
    ]


def test_errors_outside_the_customers_are_said_in_the_callers_terms():
    """BentoML validates the body with a subclass of its own making: a malformed body's 400
    said "1 validation error for ScoreRequestIODescriptor", with pydantic's link."""
    body = create_model("ScoreRequestIODescriptor", __base__=ScoreRequest)
    for raw in (b'{"customers": [', b"[1, 2]"):
        with pytest.raises(ValidationError) as caught:
            body.model_validate_json(raw)
        said = str(caught.value)
        assert "IODescriptor" not in said and "errors.pydantic.dev" not in said, said
        assert said.startswith("1 validation error for ScoreRequest\n"), said
    assert _errors(b'{"customers": [') == [
        ((), "the request body is not valid JSON: EOF while parsing a list at line 1 column 15")
    ]
    assert _errors(b"[1, 2]") == [
        ((), 'the request body should be a JSON object: {"customers": [...]}')
    ]
    assert _errors({"customers": 3}) == [(("customers",), "Input should be a valid array")]
    assert _errors({"customers": [], "x": 1}) == [(("x",), "Extra inputs are not permitted")]


def test_non_finite_amounts_are_named_too():
    body = b'{"customers": [{"customer_id": "c-nan", "as_of": "2025-06-30",' \
        b' "transactions": [{"timestamp": "2025-06-01", "amount": NaN}]}]}'  # fmt: skip
    [(loc, message)] = _errors(body)
    assert loc == ("customers", 0)
    assert message == "customer 'c-nan': transactions.0.amount: Input should be a finite number"
    # a feature value too (past the schema, NaN compares False with every bound: scored as
    # missing, with a 200)
    for raw in (b"NaN", b"Infinity", b"-Infinity"):
        row = b'{"customers": [{"customer_id": "c-f", "features": {"recency_days": ' + raw + b"}}]}"
        [(loc, message)] = _errors(row)
        assert loc == ("customers", 0) and message.startswith("customer 'c-f': features.recency_")
        assert message.endswith("is not a finite number"), message


def test_a_transaction_after_as_of_is_named_and_one_at_as_of_is_history():
    def body(at: str) -> dict:
        return {"customers": [{"customer_id": "c", "as_of": "2025-06-30T12:00:00",
                               "transactions": [{"timestamp": at, "amount": 5.0}]}]}  # fmt: skip

    assert _errors(body("2025-06-30T12:00:01")) == [
        (
            ("customers", 0),
            "customer 'c': transactions.0.timestamp: 2025-06-30T12:00:01 is after as_of "
            "2025-06-30T12:00:00 (times given with a zone are shown in UTC)",
        )
    ]
    # a time with a zone is compared in UTC, and the error says so (it showed 21:30 for
    # 23:30+02:00 without a word)
    [(_, message)] = _errors(body("2025-06-30T15:30:00+02:00"))
    assert message.endswith(
        "2025-06-30T13:30:00 is after as_of 2025-06-30T12:00:00 (times given with a zone are "
        "shown in UTC)"
    ), message
    ScoreRequest.model_validate_json(json.dumps(body("2025-06-30T12:00:00")).encode())


def _customer(**change: object) -> dict:
    return {
        "customer_id": "c1",
        "as_of": "2025-06-30",
        "transactions": [{"timestamp": "2025-06-01", "amount": 5.0}],
        **change,
    }


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        # converting these to UTC overflowed (a 500 from the server)
        ({"transactions": [{"timestamp": "0001-01-01T00:30:00+01:00", "amount": 5.0}]},
         "transactions.0.timestamp", "year 1 is outside 1900..2199"),
        ({"as_of": "9999-12-31T23:30:00-01:00"}, "as_of", "year 9999 is outside 1900..2199"),
        ({"signup_date": "1899-12-31"}, "signup_date", "year 1899 is outside 1900..2199"),
        # a year-1 as_of minus the contact cap underflowed
        ({"as_of": "0001-01-10", "transactions": []}, "as_of", "year 1 is outside"),
        ({"contacts": [{"action": "win_back", "sent_at": "0001-01-01T00:00:00+05:00"}]},
         "contacts.0.sent_at", "year 1 is outside"),
        # two of these summed to infinity and came back as an infinite value
        ({"transactions": [{"timestamp": "2025-06-01", "amount": 1e308}]},
         "transactions.0.amount", "less than or equal to 1000000000000"),
        ({"transactions": [{"timestamp": "2025-06-01", "amount": 5.0, "quantity": -2e12}]},
         "transactions.0.quantity", "greater than or equal to -1000000000000"),
        # a misspelt action escaped the contact cap unnoticed
        ({"contacts": [{"action": "recomendation", "sent_at": "2025-06-01"}]},
         "contacts.0.action",
         "'recomendation' is not in the action catalogue; did you mean 'recommendation'?"),
        ({"contacts": [{"action": "Win-Back", "sent_at": "2025-06-01"}]},
         "contacts.0.action", "did you mean 'win_back'?"),
        # read as seconds since 1970: '20240101' was 1970-08-23 06:15, and scored
        ({"as_of": "20250630"}, "as_of", "'20250630': give a date or date-time as ISO 8601"),
        ({"as_of": "1.5e9"}, "as_of", "'1.5e9': give a date"),
        ({"as_of": 1750000000}, "as_of", "1750000000: give a date or date-time as ISO 8601"),
        ({"transactions": [{"timestamp": "1748736000.5", "amount": 5.0}]},
         "transactions.0.timestamp", "give a date or date-time as ISO 8601"),
        ({"contacts": [{"action": "win_back", "sent_at": 0}]}, "contacts.0.sent_at",
         "0: give a date"),
        # in the contract's years where written, not in UTC (the loader converts, then checks)
        ({"as_of": "2199-12-31T23:30:00-05:00"}, "as_of",
         "year 2200 is outside 1900..2199 (in UTC: 2200-01-01T04:30)"),
    ],
)  # fmt: skip
def test_values_outside_the_contract_are_named(change, where, words):
    [(loc, message)] = _errors({"customers": [_customer(**change)]})
    assert loc == ("customers", 0)
    assert message.startswith(f"customer 'c1': {where}: "), message
    assert words in message


def test_dates_at_the_ends_of_the_contract_are_taken():
    request = ScoreRequest.model_validate_json(
        json.dumps(
            {
                "customers": [
                    _customer(
                        as_of="2199-12-31T23:59:59",
                        transactions=[{"timestamp": "1900-01-01T00:00:00", "amount": -1e12}],
                        contacts=[{"action": "win_back", "sent_at": "1900-01-02"}],
                    )
                ]
            }
        )
    )
    [customer] = request.customers
    assert customer.transactions is not None
    assert customer.transactions[0]["amount"] == -1e12
    assert customer.last_contacts() == {"win_back": datetime(1900, 1, 2)}


def test_the_contact_cap_reads_the_latest_send_of_an_action_whatever_their_order():
    """Contacts come in the caller's order: the later send of win_back caps it, even when it
    is listed first."""
    request = ScoreRequest.model_validate_json(
        json.dumps(
            {
                "customers": [
                    _customer(
                        contacts=[
                            {"action": "win_back", "sent_at": "2025-06-25"},
                            {"action": "win_back", "sent_at": "2025-01-01"},
                        ]
                    )
                ]
            }
        )
    )
    assert request.customers[0].last_contacts() == {"win_back": datetime(2025, 6, 25)}


def test_other_actions_and_a_later_signup_are_taken_as_they_are():
    """A shop's own actions are not capped (no error); a signup after as_of is a buyer who
    signed up later, whose days_since_signup is missing, as in training."""
    [customer] = ScoreRequest.model_validate_json(
        json.dumps(
            {
                "customers": [
                    _customer(
                        signup_date="2025-07-01",
                        contacts=[
                            {"action": "newsletter", "sent_at": "2025-06-01"},
                            {"action": "no_action", "sent_at": "2025-06-02"},
                        ],
                    )
                ]
            }
        )
    ).customers
    assert set(customer.last_contacts()) == {"newsletter", "no_action"}
    assert customer.signup_date == datetime(2025, 7, 1)


def _first_line(body: object) -> str:
    with pytest.raises(ValidationError) as caught:
        ScoreRequest.model_validate_json(json.dumps(body).encode())
    return str(caught.value).splitlines()[0]


def test_a_request_with_many_problems_lists_fifty_and_counts_the_rest():
    """The count in the answer's first line is the request's, not the number shown (a
    '... and 1,450 more' entry once made it read 51 errors)."""
    many = {"customers": [{"customer_id": f"c{i}"} for i in range(1_500)]}
    errors = _errors(many)
    assert len(errors) == 50
    assert errors[0] == (
        ("customers", 0),
        "customer 'c0': give exactly one of transactions (with as_of) or features",
    )
    assert _first_line(many) == (
        "50 validation errors for ScoreRequest (1,500 problems, the first 50 shown)"
    )
    # at the edge: 50 problems are all listed, the 51st is counted, not listed
    fifty = {"customers": [{"customer_id": f"c{i}"} for i in range(50)]}
    assert len(_errors(fifty)) == 50 and _errors(fifty)[-1][1].startswith("customer 'c49': ")
    assert _first_line(fifty) == "50 validation errors for ScoreRequest"
    one_more = {"customers": [{"customer_id": f"c{i}"} for i in range(51)]}
    assert len(_errors(one_more)) == 50
    assert _first_line(one_more) == (
        "50 validation errors for ScoreRequest (51 problems, the first 50 shown)"
    )


def test_a_feature_row_without_as_of_refuses_a_contact_in_the_future():
    """Scored as of the server's clock, a contact dated after it would silently cap the
    action (a mistyped year); within a day of it (a shop's local time, another clock) it is
    kept."""
    from datetime import UTC, timedelta

    now = datetime.now(UTC).replace(tzinfo=None)
    row = {"customer_id": "f1", "features": {"recency_days": 3}}
    ahead = (now + timedelta(days=2)).replace(microsecond=0)
    future = [{"action": "thank_you", "sent_at": ahead.isoformat()}]
    [(loc, message)] = _errors({"customers": [{**row, "contacts": future}]})
    assert loc == ("customers", 0)
    assert message == (
        f"customer 'f1': contacts.0.sent_at: {ahead:%Y-%m-%dT%H:%M:%S} is in the future (no "
        "as_of: scored as of now, in UTC)"
    )
    soon = [{"action": "thank_you", "sent_at": (now + timedelta(hours=14)).isoformat()}]
    ScoreRequest.model_validate_json(json.dumps({"customers": [{**row, "contacts": soon}]}))


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        # JSON numbers only: true was scored as an amount of 1.0, "40" parsed from text
        ({"transactions": [{"timestamp": "2025-06-01", "amount": True}]},
         "transactions.0.amount", "Input should be a valid number"),
        ({"transactions": [{"timestamp": "2025-06-01", "amount": "40"}]},
         "transactions.0.amount", "Input should be a valid number"),
        # a decimal comma, as a spreadsheet writes it: "a valid number" alone said not how
        ({"transactions": [{"timestamp": "2025-06-01", "amount": "12,50"}]},
         "transactions.0.amount", "Input should be a valid number: '12,50' is text; send a JSON "
         'number, without quotes and with \'.\' as its decimal mark (12.5, not "12,50")'),
        ({"transactions": [{"timestamp": "2025-06-01", "amount": 5, "quantity": False}]},
         "transactions.0.quantity", "Input should be a valid number"),
        ({"transactions": None, "as_of": None, "features": {"recency_days": True}},
         "features.recency_days", "a boolean: give a number, a category's text or null"),
        # one error, not one per type of the union tagged with pydantic's names (.float, .str)
        ({"transactions": None, "as_of": None, "features": {"frequency": [1]}},
         "features.frequency", "list: give a number, a category's text or null"),
        # what the loader reads as no customer id
        ({"customer_id": "  "}, "customer_id", "'  ' is blank or a marker of no value"),
        ({"customer_id": " N/A "}, "customer_id", "' N/A ' is blank or a marker of no value"),
        # texts are echoed and logged: at most 256 characters
        ({"customer_id": "c" * 257}, "customer_id", "at most 256 characters"),
        ({"acquisition_channel": "s" * 257}, "acquisition_channel", "at most 256 characters"),
        ({"transactions": [{"timestamp": "2025-06-01", "amount": 5, "category": "b" * 257}]},
         "transactions.0.category", "at most 256 characters"),
        ({"transactions": [{"timestamp": "2025-06-01", "amount": 5, "channel": "w" * 257}]},
         "transactions.0.channel", "at most 256 characters"),
        ({"contacts": [{"action": "a" * 257, "sent_at": "2025-06-01"}]},
         "contacts.0.action", "at most 256 characters"),
        ({"transactions": None, "as_of": None, "features": {"favourite_category": "b" * 257}},
         "features.favourite_category", "257 characters; at most 256"),
    ],
)  # fmt: skip
def test_booleans_numbers_as_text_blank_ids_and_long_texts_are_refused(change, where, words):
    errors = _errors({"customers": [_customer(**change)]})
    assert errors[0][0] == ("customers", 0)
    assert where in errors[0][1] and words in errors[0][1], errors


@pytest.mark.parametrize("length", [257, 1_000_000])
def test_a_long_id_is_cut_in_its_error_and_its_own_length_given(length):
    [(_, message)] = _errors({"customers": [_customer(customer_id="x" * length)]})
    assert message == (
        f"customer '{'x' * 40}'... ({length:,} characters): customer_id: "
        "String should have at most 256 characters"
    )


def test_ids_are_read_as_the_loader_reads_them():
    """Stripped, and an integral id written as a float is the integer's text, as
    features.loading reads them: so that decisions join to the loaded transactions."""
    ids = [" a ", "a\t", "13085.0", "b.0", "NULLS", "7"]
    request = ScoreRequest.model_validate_json(
        json.dumps({"customers": [_customer(customer_id=i) for i in ids]})
    )
    assert [c.customer_id for c in request.customers] == ["a", "a", "13085", "b.0", "NULLS", "7"]


def test_whole_json_numbers_are_ids_as_the_loader_reads_them():
    """A backend with integer keys sent 13085 and got 400 'Input should be a valid string';
    the loader reads 13085 and 13085.0 in a file as '13085'."""
    tx = [{"timestamp": "2025-06-01", "amount": 5.0, "order_id": 489434},
          {"timestamp": "2025-06-02", "amount": 5.0, "order_id": 489435.0}]  # fmt: skip
    body = {"customers": [_customer(customer_id=13085, transactions=tx),
                          _customer(customer_id=13086.0), _customer(customer_id=-7)]}  # fmt: skip
    request = ScoreRequest.model_validate_json(json.dumps(body))
    assert [c.customer_id for c in request.customers] == ["13085", "13086", "-7"]
    big = 12345678901234567890123  # an integer is exact in JSON and Python, however large
    one = ScoreRequest.model_validate_json(json.dumps({"customers": [_customer(customer_id=big)]}))
    assert one.customers[0].customer_id == str(big)
    assert [t["order_id"] for t in request.customers[0].transactions] == ["489434", "489435"]


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        ({"customer_id": 13085.5}, "customer_id", "13085.5 is a fraction, or a number with"),
        ({"customer_id": 1e300}, "customer_id", "1e+300 is a fraction, or a number with a point "
         "or exponent over 2**53"),
        ({"customer_id": True}, "customer_id", "Input should be a valid string"),
        ({"transactions": [{"timestamp": "2025-06-01", "amount": 5, "order_id": 0.5}]},
         "transactions.0.order_id", "0.5 is a fraction"),
    ],
)  # fmt: skip
def test_fractions_booleans_and_inexact_numbers_are_not_ids(change, where, words):
    errors = _errors({"customers": [_customer(**change)]})
    assert where in errors[0][1] and words in errors[0][1], errors


def test_labels_and_order_ids_read_as_the_loader_reads_a_file():
    """' books ' and 'books' were two categories in a request and one in `crm-ltv score`, and
    a blank category became a customer's favourite: the same customer, two scores."""
    body = {"customers": [_customer(acquisition_channel=" ads ", transactions=[
        {"timestamp": "2025-06-01", "amount": 5.0, "category": " books ", "channel": "  ",
         "order_id": " 17.0 "},
        {"timestamp": "2025-06-02", "amount": 5.0, "category": "", "order_id": "NULL"},
    ])]}  # fmt: skip
    customer = ScoreRequest.model_validate_json(json.dumps(body)).customers[0]
    first, second = customer.transactions
    assert (first["category"], first["channel"], first["order_id"]) == ("books", None, "17")
    assert (second["category"], second["order_id"]) == (None, None)
    assert customer.acquisition_channel == "ads"
