"""engine.atom_crypto (and the simulator's own implementation) against vectors from openssl.

Every constant below was computed with the OpenSSL 3 command line, not with this code; the
command is in the comment above it.
"""

from __future__ import annotations

import json

import pytest

from engine.models import Status
from engine.providers import atom_crypto
from engine.providers import atom_messages as atom
from engine.providers.atom_crypto import AtomCredentials, AtomCryptoError, AtomProtocolError
from simulator import atom_wire as sim_atom

REQ_ENC_KEY = "0F1E2D3C4B5A69788796A5B4C3D2E1F0"
RES_ENC_KEY = "F0E1D2C3B4A5968778695A4B3C2D1E0F"
CREDS = AtomCredentials(
    merch_id="900001",
    password="Dev@Pass1",
    req_hash_key="REQHASH-DEV-ONLY",
    res_hash_key="RESHASH-DEV-ONLY",
    req_enc_key=REQ_ENC_KEY,
    res_enc_key=RES_ENC_KEY,
)
TID = "DUMMY_20260101_00000001"
ATOM_TXN_ID = "11000000000001"
# A refund's public id has the engine's shape: "RF" and 11 Base62 characters.
REFUND_ID = "RF0AbCdEfGhIj"
ATOM_REFUND_ID = "12000000000001"
IV_HEX = "000102030405060708090a0b0c0d0e0f"

# openssl kdf -keylen 32 -kdfopt digest:SHA512 -kdfopt pass:0F1E2D3C4B5A69788796A5B4C3D2E1F0 \
#   -kdfopt salt:0F1E2D3C4B5A69788796A5B4C3D2E1F0 -kdfopt iter:65536 PBKDF2
REQ_KEY_HEX = "B7320AE4F8F15927D4BE6B3555710DC3A3C3207D5879D954BBD46630D7569031"
# openssl kdf -keylen 32 -kdfopt digest:SHA512 -kdfopt pass:F0E1D2C3B4A5968778695A4B3C2D1E0F \
#   -kdfopt salt:F0E1D2C3B4A5968778695A4B3C2D1E0F -kdfopt iter:65536 PBKDF2
RES_KEY_HEX = "96E16AA374875B3B889C2D549AB8D3456823A498892E503F54B318E7B6244878"

# printf '%s' "$PLAIN_REQ" | openssl enc -aes-256-cbc -K $REQ_KEY_HEX \
#   -iv 000102030405060708090a0b0c0d0e0f | xxd -p -c 1000 | tr a-f A-F
PLAIN_REQ = b'{"merchTxnId":"DUMMY_20260101_00000001","amount":"1000"}'
CIPHER_REQ = (
    "B671C8961BE8B6CE7C6AAF8612A1841D71DBE401788E0537360F058AF801A151"
    "D5E964F23DC8458F73D3B5140E96B833FCD97E00830697E4ED35B85B4F7620EA"
)
# The same with exactly one block of input: PKCS#7 adds a whole block of padding.
# printf '%s' 0123456789ABCDEF | openssl enc -aes-256-cbc -K $REQ_KEY_HEX \
#   -iv 000102030405060708090a0b0c0d0e0f | xxd -p -c 1000 | tr a-f A-F
PLAIN_BLOCK = b"0123456789ABCDEF"
CIPHER_BLOCK = "7DBA08B128652508661A360E555643197B3CC5D3D73D49865CF830DB38DBB59D"
# printf '%s' "$PLAIN_RES" | openssl enc -aes-256-cbc -K $RES_KEY_HEX \
#   -iv 000102030405060708090a0b0c0d0e0f | xxd -p -c 1000 | tr a-f A-F
PLAIN_RES = b'{"statusCode":"OTS0000","atomTxnId":"11000000000001"}'
CIPHER_RES = (
    "95F9AD299FC867825EDB7F33CAB5A7F58ECB132F90BAEAA0C04F3EDB1C92E119"
    "AE8DF1E06C9CF66CDD6599E91F1418FA51397920C264CEC3A2F0E836C70436FE"
)

# printf '%s' '900001Dev@Pass1DUMMY_20260101_000000011000KRWAUTH' \
#   | openssl dgst -sha512 -hmac 'REQHASH-DEV-ONLY'
REQ_SIG_AUTH = (
    "2e081c96ec52d1cf2db592f7e6630421dc76a7d99e9895f80f0f23eef101efc8"
    "93c647a722168833a5de8384e2842fbfa3c2322801057f04569eeea524c00470"
)
# printf '%s' '900001Dev@Pass1DUMMY_20260101_000000011000KRWSTATUS' \
#   | openssl dgst -sha512 -hmac 'REQHASH-DEV-ONLY'
REQ_SIG_STATUS = (
    "c3d9fce24ec223017dc725125c81cafea30362917e2c8971326fe96d011b3cd5"
    "a862c7ced4f52e10a30230e6fca7de24aa00f13356b0136321c4b9bec8ed71f2"
)
# printf '%s' '90000111000000000001DUMMY_20260101_00000001OTS00001000KRW' \
#   | openssl dgst -sha512 -hmac 'RESHASH-DEV-ONLY'
RES_SIG = (
    "54661276127b8078f0d1604ba1afe7817c563fdf4d584c760f4a4ae7d779f317"
    "54b79b441fa046173fc17a1e4163ca48eafea54d7b544db3287bb5b5575990d7"
)

# printf '%s' '900001Dev@Pass1DUMMY_20260101_00000001RF0AbCdEfGhIj400KRWREFUND' \
#   | openssl dgst -sha512 -hmac 'REQHASH-DEV-ONLY'
REQ_SIG_REFUND = (
    "b2808b70513248156152f72eba2f084c44d68b63a5d73e7cdbed5bc8a214ab0b"
    "2de59ca1e5b30185f56729eb3f6c33f6f01ed1a372dbb0f5f19ca9c4d5f461a8"
)
# printf '%s' '900001Dev@Pass1DUMMY_20260101_00000001RF0AbCdEfGhIj400KRWREFUND_STATUS' \
#   | openssl dgst -sha512 -hmac 'REQHASH-DEV-ONLY'
REQ_SIG_REFUND_STATUS = (
    "7daf9f38b1d6318145c5f8e873cf7ae2630717938ce6ca758011e627c1bfd231"
    "1961befb2471b41fd2f15cc53fe5c4d20b466de78d6efcde0cfc4a1a246a62b3"
)
# printf '%s' '90000112000000000001DUMMY_20260101_00000001RF0AbCdEfGhIjOTS0000400KRW' \
#   | openssl dgst -sha512 -hmac 'RESHASH-DEV-ONLY'
RES_SIG_REFUNDED = (
    "fe9d8332a3aa99e1662b4cfe3c9ed53e9c9c9102db1a6f5b86d1781b7ab3e56b"
    "6272c2d39fb3783ee705ad7ecb004815424c608679091da7eac240f616a0ba9c"
)
# A rejection has no Atom refund id: it is signed as "".
# printf '%s' '900001DUMMY_20260101_00000001RF0AbCdEfGhIjOTS0600400KRW' \
#   | openssl dgst -sha512 -hmac 'RESHASH-DEV-ONLY'
RES_SIG_REJECTED = (
    "df33451f5bb0cec40c740fc97861d387c1351cf8bb7d27f0d0d0a7cbfddba8e2"
    "b99040841e7f962cd8d78c67ac96744f6713eae66e4862b9cc17448ed882eb83"
)


def flip(hex_text: str, index: int) -> str:
    """`hex_text` with the hex digit at `index` changed."""
    digit = "0" if hex_text[index] != "0" else "1"
    return hex_text[:index] + digit + hex_text[index + 1 :]


def sealed_answer(status_code: str = "OTS0000", **overrides: str) -> str:
    """A genuine response encData, built from the openssl-checked primitives."""
    fields = {
        "merchTxnId": TID,
        "atomTxnId": ATOM_TXN_ID,
        "statusCode": status_code,
        "amount": "1000",
        "currency": "KRW",
    }
    signature = atom_crypto.response_signature(
        CREDS, fields["atomTxnId"], TID, status_code, "1000", "KRW"
    )
    body = fields | {"signature": signature} | overrides
    key = atom_crypto.derive_key(RES_ENC_KEY)
    return atom_crypto.encrypt(key, json.dumps(body).encode())


def test_derive_key_matches_openssl_pbkdf2() -> None:
    assert atom_crypto.derive_key(REQ_ENC_KEY).hex().upper() == REQ_KEY_HEX
    assert atom_crypto.derive_key(RES_ENC_KEY).hex().upper() == RES_KEY_HEX


def test_encrypt_matches_openssl_aes_256_cbc() -> None:
    key = bytes.fromhex(REQ_KEY_HEX)
    assert atom_crypto.encrypt(key, PLAIN_REQ) == CIPHER_REQ
    assert atom_crypto.encrypt(key, PLAIN_BLOCK) == CIPHER_BLOCK
    assert atom_crypto.encrypt(bytes.fromhex(RES_KEY_HEX), PLAIN_RES) == CIPHER_RES


def test_decrypt_inverts_openssl_ciphertexts_in_either_case() -> None:
    key = bytes.fromhex(RES_KEY_HEX)
    assert atom_crypto.decrypt(key, CIPHER_RES) == PLAIN_RES
    assert atom_crypto.decrypt(key, CIPHER_RES.lower()) == PLAIN_RES
    assert atom_crypto.decrypt(bytes.fromhex(REQ_KEY_HEX), CIPHER_BLOCK) == PLAIN_BLOCK


def test_request_signatures_match_openssl_hmac() -> None:
    assert atom_crypto.request_signature(CREDS, TID, 1000, "KRW", "AUTH") == REQ_SIG_AUTH
    assert atom_crypto.request_signature(CREDS, TID, 1000, "KRW", "STATUS") == REQ_SIG_STATUS


def test_response_signature_matches_openssl_hmac() -> None:
    assert (
        atom_crypto.response_signature(CREDS, ATOM_TXN_ID, TID, "OTS0000", "1000", "KRW") == RES_SIG
    )


def test_simulator_implementation_matches_the_same_vectors() -> None:
    assert sim_atom.aes_key(REQ_ENC_KEY).hex().upper() == REQ_KEY_HEX
    assert (
        sim_atom.sign(CREDS.req_hash_key, "900001", "Dev@Pass1", TID, "1000", "KRW", "AUTH")
        == REQ_SIG_AUTH
    )
    assert (
        sim_atom.sign(CREDS.res_hash_key, "900001", ATOM_TXN_ID, TID, "OTS0000", "1000", "KRW")
        == RES_SIG
    )
    assert sim_atom.unseal(RES_ENC_KEY, CIPHER_RES) == json.loads(PLAIN_RES)
    # seal() writes compact JSON, which is what PLAIN_RES is.
    assert sim_atom.seal(RES_ENC_KEY, json.loads(PLAIN_RES)) == CIPHER_RES


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1000])
def test_round_trip_of_every_padding_length(size: int) -> None:
    key = atom_crypto.derive_key(REQ_ENC_KEY)
    plaintext = bytes(range(256)) * 4
    sealed = atom_crypto.encrypt(key, plaintext[:size])
    assert len(sealed) == 32 * (size // 16 + 1)
    assert sealed == sealed.upper()
    assert atom_crypto.decrypt(key, sealed) == plaintext[:size]


def test_sealed_request_round_trips_and_carries_a_valid_signature() -> None:
    sealed = atom.seal_request(CREDS, TID, 1000, "KRW", "AUTH")
    body = json.loads(atom_crypto.decrypt(atom_crypto.derive_key(REQ_ENC_KEY), sealed))
    assert body == {
        "merchId": "900001",
        "merchTxnId": TID,
        "amount": "1000",
        "currency": "KRW",
        "txnType": "AUTH",
        "signature": REQ_SIG_AUTH,
    }


@pytest.mark.parametrize(
    "bad",
    ["", "ABC", CIPHER_RES[:-2], CIPHER_RES[:-1] + "G", CIPHER_RES[:32] + " " + CIPHER_RES[33:]],
)
def test_malformed_hex_is_a_clear_error(bad: str) -> None:
    with pytest.raises(AtomCryptoError, match="hex"):
        atom_crypto.decrypt(bytes.fromhex(RES_KEY_HEX), bad)


def test_flipped_digit_in_the_last_block_breaks_the_padding() -> None:
    key = bytes.fromhex(RES_KEY_HEX)
    with pytest.raises(AtomCryptoError, match="padding"):
        atom_crypto.decrypt(key, flip(CIPHER_RES, len(CIPHER_RES) - 1))


def test_wrong_key_is_an_error() -> None:
    with pytest.raises(AtomCryptoError, match="padding"):
        atom_crypto.decrypt(bytes.fromhex(REQ_KEY_HEX), CIPHER_RES)


def test_genuine_answer_opens() -> None:
    answer = atom.open_answer(CREDS, sealed_answer())
    assert (answer.merch_txn_id, answer.atom_txn_id, answer.status_code) == (
        TID,
        ATOM_TXN_ID,
        "OTS0000",
    )


@pytest.mark.parametrize("index", range(0, 64 * 8, 7))
def test_any_flipped_digit_of_an_answer_is_refused(index: int) -> None:
    # CBC has no integrity of its own: a flip may break the padding, the JSON, or only the
    # fields, and then the signature catches it. Whichever, it is never accepted.
    sealed = sealed_answer()
    assert index < len(sealed)
    with pytest.raises(AtomProtocolError):
        atom.open_answer(CREDS, flip(sealed, index))


@pytest.mark.parametrize(
    "override",
    [
        {"statusCode": "OTS0600"},
        {"amount": "1"},
        {"atomTxnId": "11000000000002"},
        {"signature": flip(RES_SIG, 0)},
        {"signature": RES_SIG.upper()},
    ],
)
def test_a_changed_field_fails_the_signature(override: dict[str, str]) -> None:
    with pytest.raises(atom_crypto.AtomSignatureError) as caught:
        atom.open_answer(CREDS, sealed_answer(**override))
    assert caught.value.merch_txn_id == TID


def test_answer_under_the_request_key_is_refused() -> None:
    wrong = atom_crypto.encrypt(atom_crypto.derive_key(REQ_ENC_KEY), PLAIN_RES)
    with pytest.raises(AtomProtocolError):
        atom.open_answer(CREDS, wrong)


def test_verify_callback_reads_approval_and_decline() -> None:
    ok = atom.verify_callback(CREDS, sealed_answer())
    assert (ok.merch_txn_id, ok.status, ok.atom_txn_id, ok.reason) == (
        TID,
        Status.SUCCESS,
        ATOM_TXN_ID,
        None,
    )
    assert (ok.amount, ok.currency) == (1000, "KRW")
    declined = atom.verify_callback(CREDS, sealed_answer("OTS0600", description="EXPIRED_CARD"))
    assert (declined.status, declined.reason) == (Status.FAILED, "EXPIRED_CARD")
    with pytest.raises(AtomProtocolError, match="not a final answer"):
        atom.verify_callback(CREDS, sealed_answer("OTS0404"))


def sealed_refund_answer(status_code: str = "OTS0000", **overrides: str) -> str:
    """A genuine refund answer encData, signed with the openssl-checked vector's fields."""
    refund_no = ATOM_REFUND_ID if status_code == "OTS0000" else ""
    fields = {
        "merchTxnId": TID,
        "refundTxnId": REFUND_ID,
        "atomRefundId": refund_no,
        "statusCode": status_code,
        "amount": "400",
        "currency": "KRW",
    }
    signature = atom_crypto.refund_response_signature(
        CREDS, refund_no, TID, REFUND_ID, status_code, "400", "KRW"
    )
    body = fields | {"signature": signature} | overrides
    return atom_crypto.encrypt(atom_crypto.derive_key(RES_ENC_KEY), json.dumps(body).encode())


def test_refund_request_signatures_match_openssl_hmac() -> None:
    sign = atom_crypto.refund_request_signature
    assert sign(CREDS, TID, REFUND_ID, 400, "KRW", "REFUND") == REQ_SIG_REFUND
    assert sign(CREDS, TID, REFUND_ID, 400, "KRW", "REFUND_STATUS") == REQ_SIG_REFUND_STATUS


def test_refund_response_signatures_match_openssl_hmac() -> None:
    sign = atom_crypto.refund_response_signature
    assert sign(CREDS, ATOM_REFUND_ID, TID, REFUND_ID, "OTS0000", "400", "KRW") == (
        RES_SIG_REFUNDED
    )
    assert sign(CREDS, "", TID, REFUND_ID, "OTS0600", "400", "KRW") == RES_SIG_REJECTED


def test_simulator_refund_signatures_match_the_same_vectors() -> None:
    assert (
        sim_atom.sign(
            CREDS.req_hash_key, "900001", "Dev@Pass1", TID, REFUND_ID, "400", "KRW", "REFUND"
        )
        == REQ_SIG_REFUND
    )
    keys = sim_atom.MerchantKeys(
        CREDS.merch_id,
        CREDS.password,
        CREDS.req_hash_key,
        CREDS.res_hash_key,
        REQ_ENC_KEY,
        RES_ENC_KEY,
    )
    refunded = {
        "merchTxnId": TID,
        "refundTxnId": REFUND_ID,
        "atomRefundId": ATOM_REFUND_ID,
        "statusCode": "OTS0000",
        "amount": "400",
        "currency": "KRW",
    }
    assert sim_atom.answer_signature(keys, refunded) == RES_SIG_REFUNDED
    rejected = refunded | {"atomRefundId": "", "statusCode": "OTS0600"}
    assert sim_atom.answer_signature(keys, rejected) == RES_SIG_REJECTED


def test_sealed_refund_request_round_trips_and_carries_a_valid_signature() -> None:
    for txn, signature in (("REFUND", REQ_SIG_REFUND), ("REFUND_STATUS", REQ_SIG_REFUND_STATUS)):
        sealed = atom.seal_refund_request(CREDS, TID, REFUND_ID, 400, "KRW", txn)
        body = json.loads(atom_crypto.decrypt(atom_crypto.derive_key(REQ_ENC_KEY), sealed))
        assert body == {
            "merchId": "900001",
            "merchTxnId": TID,
            "refundTxnId": REFUND_ID,
            "amount": "400",
            "currency": "KRW",
            "txnType": txn,
            "signature": signature,
        }


def test_genuine_refund_answers_open() -> None:
    done = atom.open_refund_answer(CREDS, sealed_refund_answer())
    assert (done.merch_txn_id, done.refund_txn_id, done.atom_refund_id, done.status_code) == (
        TID,
        REFUND_ID,
        ATOM_REFUND_ID,
        "OTS0000",
    )
    rejected = atom.open_refund_answer(
        CREDS, sealed_refund_answer("OTS0600", description="EXCEEDS_CAPTURED")
    )
    assert (rejected.atom_refund_id, rejected.description) == ("", "EXCEEDS_CAPTURED")


@pytest.mark.parametrize(
    "override",
    [
        {"statusCode": "OTS0600"},
        {"amount": "4000"},
        {"atomRefundId": "12000000000002"},
        {"refundTxnId": "RF0AbCdEfGhIk"},
        {"merchTxnId": "DUMMY_20260101_00000002"},
        {"signature": flip(RES_SIG_REFUNDED, 0)},
    ],
)
def test_a_changed_refund_field_fails_the_signature(override: dict[str, str]) -> None:
    with pytest.raises(atom_crypto.AtomSignatureError):
        atom.open_refund_answer(CREDS, sealed_refund_answer(**override))


def test_a_payment_answer_is_not_a_refund_answer() -> None:
    # Without refundTxnId and atomRefundId it is refused before any signature is checked.
    with pytest.raises(AtomProtocolError, match="lacks"):
        atom.open_refund_answer(CREDS, sealed_answer())


def _token_answer(**override: str) -> dict[str, str]:
    """A hosted AUTH's answer signed by the simulator's own implementation."""
    keys = sim_atom.MerchantKeys(
        CREDS.merch_id,
        CREDS.password,
        CREDS.req_hash_key,
        CREDS.res_hash_key,
        CREDS.req_enc_key,
        CREDS.res_enc_key,
    )
    answer = {
        "merchTxnId": TID,
        "atomTxnId": "",
        "atomTokenId": "AT0123456789abcdef01234567",
        "actionUrl": "https://atom.example/atom/pay/AT0123456789abcdef01234567",
        "statusCode": "OTS0100",
        "amount": "1000",
        "currency": "KRW",
    }
    answer["signature"] = sim_atom.answer_signature(keys, answer)
    return answer | override


def test_a_token_answer_opens_and_its_signature_covers_the_token() -> None:
    # The token is signed in the atom_txn_id slot after atomTxnId (""): the signature is
    # HMAC over merch_id + "" + token + merchTxnId + statusCode + amount + currency.
    expected = atom_crypto.response_signature(
        CREDS, "AT0123456789abcdef01234567", TID, "OTS0100", "1000", "KRW"
    )
    answer = _token_answer()
    assert answer["signature"] == expected
    key = atom_crypto.derive_key(RES_ENC_KEY)
    opened = atom.open_answer(CREDS, atom_crypto.encrypt(key, json.dumps(answer).encode()))
    assert (opened.status_code, opened.atom_token_id, opened.atom_txn_id) == (
        atom.TOKEN_ISSUED,
        "AT0123456789abcdef01234567",
        "",
    )
    assert opened.action_url.endswith("/atom/pay/AT0123456789abcdef01234567")
    # Another token does not verify. (actionUrl is not signed: the provider only follows a
    # page on Atom's own origin, see AtomProvider._outcome.)
    forged = _token_answer(atomTokenId="AT0123456789abcdef01234568")
    with pytest.raises(atom_crypto.AtomSignatureError):
        atom.open_answer(CREDS, atom_crypto.encrypt(key, json.dumps(forged).encode()))


def test_a_hosted_request_carries_its_urls_outside_the_signature() -> None:
    urls = {"returnUrl": "https://gw.example/r", "callbackUrl": "https://gw.example/c"}
    sealed = atom.seal_request(CREDS, TID, 1000, "KRW", "AUTH", urls)
    body = json.loads(atom_crypto.decrypt(atom_crypto.derive_key(REQ_ENC_KEY), sealed))
    assert body["returnUrl"] == urls["returnUrl"] and body["callbackUrl"] == urls["callbackUrl"]
    plain = atom.seal_request(CREDS, TID, 1000, "KRW", "AUTH")
    assert (
        body["signature"]
        == json.loads(atom_crypto.decrypt(atom_crypto.derive_key(REQ_ENC_KEY), plain))["signature"]
    )
