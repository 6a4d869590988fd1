"""English and Korean: the language of a request, the words, amounts and times in it.

The language is the user's choice (a cookie set by the switch on every page), else the best
match of Accept-Language, else English. Amounts are formatted per currency by Babel (CLDR)
from integer minor units; times are shown in the user's zone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import babel.numbers
from aiohttp import web

from engine import money

LANGUAGES = ("en", "ko")
LANG_COOKIE = "bo_lang"
_LOCALES = {"en": "en_US", "ko": "ko_KR"}

# English text -> Korean. A phrase missing here is shown in English.
KO: dict[str, str] = {
    "Back office": "백오피스",
    "Log in": "로그인",
    "Log out": "로그아웃",
    "Log out everywhere": "모든 기기에서 로그아웃",
    "Email": "이메일",
    "Password": "비밀번호",
    "Wrong email or password.": "이메일 또는 비밀번호가 올바르지 않습니다.",
    "Too many attempts. Try again in {n} seconds.": (
        "시도가 너무 많습니다. {n}초 후에 다시 시도하세요."
    ),
    "Skip to content": "본문으로 건너뛰기",
    "Overview": "개요",
    "Payments": "결제 내역",
    "Payment": "결제",
    "Developers": "개발자",
    "Merchants": "가맹점",
    "Recovery": "복구",
    "Audit log": "감사 로그",
    "Webhook deliveries": "웹훅 전송 기록",
    "Mode": "모드",
    "Test": "테스트",
    "Live": "라이브",
    "Switch": "전환",
    "Language": "언어",
    "Kind": "종류",
    "payment": "결제",
    "cancel": "취소",
    "refund": "환불",
    "Status": "상태",
    "Any": "전체",
    "From": "시작일",
    "To": "종료일",
    "Amount from": "최소 금액",
    "Amount to": "최대 금액",
    "in minor units": "최소 화폐 단위",
    "Search": "검색",
    "Order id, order name, customer id or transaction id": "주문번호, 주문명, 고객 ID 또는 거래 ID",
    "Apply": "적용",
    "Clear": "초기화",
    "Showing every date": "모든 기간 표시 중",
    "Showing {start} to {end}": "{start} ~ {end} 표시 중",
    "from {start}": "{start}부터",
    "until {end}": "{end}까지",
    "Times in {zone}": "시간대: {zone}",
    "Export CSV": "CSV 내보내기",
    "Saved views": "저장된 보기",
    "Save this view as": "현재 보기 저장 이름",
    "Save": "저장",
    "Delete": "삭제",
    "No saved views yet.": "저장된 보기가 없습니다.",
    "Next page": "다음 페이지",
    "First page": "첫 페이지",
    "Nothing matches these filters.": "조건에 맞는 내역이 없습니다.",
    "Time": "시간",
    "Transaction id": "거래 ID",
    "Order id": "주문번호",
    "Order name": "주문명",
    "Customer id": "고객 ID",
    "Amount": "금액",
    "Refund id": "환불 ID",
    "Timeline": "타임라인",
    "Actor": "주체",
    "What": "내용",
    "Actions": "작업",
    "Cancel payment": "결제 취소",
    "Refund": "환불",
    "Reason": "사유",
    "Refund amount": "환불 금액",
    "Resend webhook": "웹훅 재전송",
    "Refunded": "환불됨",
    "Refundable": "환불 가능",
    "Your role can only read.": "읽기 전용 권한입니다.",
    "API keys": "API 키",
    "Name": "이름",
    "Prefix": "접두어",
    "Created": "생성",
    "Last used": "마지막 사용",
    "Expires": "만료",
    "Revoked": "폐기됨",
    "Expired": "만료됨",
    "never": "없음",
    "Issue a key": "키 발급",
    "Expires on (optional)": "만료일 (선택)",
    "Issue": "발급",
    "Roll": "교체",
    "Revoke": "폐기",
    "Grace": "유예 시간",
    "Copy": "복사",
    "Copied": "복사됨",
    "This secret is shown once. Copy it now.": "이 비밀값은 한 번만 표시됩니다. 지금 복사하세요.",
    "Webhook endpoints": "웹훅 엔드포인트",
    "Description": "설명",
    "Add endpoint": "엔드포인트 추가",
    "Add": "추가",
    "Roll secret": "비밀값 교체",
    "Send test event": "테스트 이벤트 전송",
    "Event type": "이벤트 종류",
    "Event id": "이벤트 ID",
    "Attempts": "시도 횟수",
    "Last answer": "마지막 응답",
    "delivered": "전송됨",
    "failed": "실패",
    "dead": "중단됨",
    "pending": "대기",
    "Resend": "재전송",
    "Resend every matching delivery": "조건에 맞는 전송 모두 재전송",
    "Volume": "거래액",
    "Success rate": "성공률",
    "Approval latency": "승인 지연",
    "Failure reasons": "실패 사유",
    "Today": "오늘",
    "7 days": "7일",
    "30 days": "30일",
    "Not found": "찾을 수 없음",
    "Forbidden": "권한 없음",
    "Back": "돌아가기",
    "Done.": "완료되었습니다.",
    "Every UNRESOLVED payment": "모든 미확정 결제",
    "Late callbacks": "늦게 온 콜백",
    "Atom token": "Atom 토큰",
    "Customer may pay until": "고객 결제 기한",
    "Atom transaction id": "Atom 거래 번호",
    "Payment method": "결제 수단",
    "Came after the payment was final; not applied. Settle at the provider.": (
        "결제가 끝난 뒤 도착해 적용하지 않았습니다. 결제사에서 처리하세요."
    ),
    "Ours": "우리 상태",
    "Theirs": "결제사 상태",
    "Parked (a provider refused our credentials)": "보류됨 (제공사가 인증 정보를 거부함)",
    "Release parked payments": "보류된 결제 재개",
    "Release": "재개",
    "Provider": "제공사",
    "Merchant": "가맹점",
    "Why": "사유",
    "Since": "시작 시각",
    "Inquire now": "지금 조회",
    "Outcome": "결과",
    "Resolve": "수동 확정",
    "Nothing to recover.": "복구할 결제가 없습니다.",
    "parked": "보류됨",
    "Suspended": "정지됨",
    "Suspend": "정지",
    "Resume": "재개",
    "New merchant": "새 가맹점",
    "every merchant": "전체 가맹점",
    "Transaction id, order id or mid": "거래 ID, 주문번호 또는 가맹점 ID",
    "Type a transaction id, an order id or a mid.": (
        "거래 ID, 주문번호 또는 가맹점 ID를 입력하세요."
    ),
    "Target": "대상",
    "Action": "작업",
    "Detail": "상세",
    "Succeeded": "성공",
    "Request and answer": "요청과 응답",
}


def _from_header(header: str) -> str | None:
    """The best of LANGUAGES in an Accept-Language header, by its q values."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and q > 0:
            ranked.append((-q, i, primary))
    return min(ranked)[2] if ranked else None


def language(request: web.Request) -> str:
    """The request's language: the switch's cookie, else Accept-Language, else English."""
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return _from_header(request.headers.get("Accept-Language", "")) or "en"


def translator(lang: str) -> Callable[..., str]:
    """`_("text", n=3)`: the text in `lang`, with {placeholders} filled."""
    table = KO if lang == "ko" else {}

    def translate(text: str, **values: object) -> str:
        found = table.get(text, text)
        return found.format(**values) if values else found

    return translate


def amount(minor: int, currency: str, lang: str) -> str:
    """Integer minor units as the locale writes the currency: ₩10,000, US$12.34."""
    try:
        exponent = money.minor_unit_exponent(currency)
    except ValueError:
        return f"{minor} {currency}"
    value = Decimal(minor).scaleb(-exponent)
    return babel.numbers.format_currency(value, currency, locale=_LOCALES[lang])


@functools.lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """A time zone by IANA name (the settings checked it)."""
    return ZoneInfo(name)


def when(ts: datetime | None, zone_name: str) -> str:
    """A timestamp in the user's zone, to the second; empty for None."""
    if ts is None:
        return ""
    return ts.astimezone(zone(zone_name)).strftime("%Y-%m-%d %H:%M:%S")
