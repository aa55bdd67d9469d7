"""What the sender wrote this time: quoted history, quote headers and signatures taken out.

A reply is read line by line. The first quote header ("On … wrote:" in the languages below,
an Outlook "From: … Sent: …" block, "-----Original Message-----") starts the history. When the
client quotes without `>` (Outlook, HTML mail) everything after the header is history; when it
quotes with `>`, lines after the quote are a bottom-posted or interleaved answer and are kept.
A line starting with `>` is never new. Forwarded messages are kept whole: they are the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SCAN_LINES = 2_000  # quote headers are looked for this far into the body
_SCAN_LINE = 300  # no quote header is longer, even folded; longer lines are never read as one

# Verbs of "On <date>, <name> wrote:" lines, as mail clients write them (Gmail, Apple Mail,
# Outlook, Thunderbird, Zoho). A name may follow the verb: "Am … schrieb Ann <ann@x>:".
_VERBS = "|".join((
    r"wrote", r"writes",  # en
    r"schrieb", r"geschrieben",  # de
    r"schreef", r"geschreven",  # nl
    r"a\s+écrit", r"écrivait",  # fr
    r"escribió",  # es
    r"escreveu",  # pt
    r"ha\s+scritto", r"scrisse",  # it
    r"napisał\(a\)", r"napisała?", r"pisze",  # pl
    r"napsal\(a\)", r"napsala?",  # cs
    r"kirjoitti",  # fi
    r"skrev(?:\s+følgende)?",  # da, no, sv
    r"написал\(а\)", r"написала?", r"пишет",  # ru
    r"yazdı",  # tr
))
_VERB_HEADER = re.compile(rf"(?:.*\s)?(?:{_VERBS})(?:\s.*)?[:：]|.*(?:写道|寫道|작성).*[:：]",
                          re.IGNORECASE)
# Gmail in Russian or Japanese, Yandex: "пн, 1 дек. 2026 г. в 10:00, Ann <ann@example.com>:"
_ADDRESS_HEADER = re.compile(r".*\d{1,2}[:.]\d{2}.*[<(\[][^<>()\[\]\s]+@[^<>()\[\]\s]+[>)\]][:：]")
# How attribution lines begin in the languages above, when they begin with a word.
_OPENING = re.compile(r"(?:-{2,}\s*)?(?:On|Am|Op|Le|El|Em|Il giorno|Il|W dniu|Dnia|Dne|Den)\s",
                      re.IGNORECASE)
_ADDRESS = re.compile(r"[^\s<>()\[\]]+@[^\s<>()\[\]]+\.\w+")
_TIME = re.compile(r"\d{1,2}[:.]\d{2}")
_FRAMED = re.compile(r"-{2,}\s*(.*?)\s*-{2,}")  # Zoho: "---- On … wrote ----"

_ORIGINAL = re.compile(
    r"-{2,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine|Oorspronkelijk "
    r"bericht|Messaggio originale|Mensaje original|Mensagem original|Wiadomość oryginalna|"
    r"Původní zpráva|Alkuperäinen viesti|Oprindelig meddelelse|Opprinnelig melding|"
    r"Ursprungligt meddelande|Исходное сообщение|Orijinal ileti)\s*-{2,}", re.IGNORECASE)
# Outlook's block: "From: …" then, within a few lines, "Sent: …" and "To: …" or "Subject: …".
_OUTLOOK_FROM = re.compile(
    r"\*?(?:From|Von|De|Van|Da|Od|Fra|Från|Lähettäjä|От|Kimden)\*?\s?:\*?\s*\S.*")
_OUTLOOK_DATE = re.compile(
    r"\*?(?:Sent|Date|Gesendet|Datum|Envoyé|Verzonden|Inviato|Data|Wysłano|Enviado|Enviada|"
    r"Fecha|Sendt|Skickat|Lähetetty|Päivämäärä|Odesláno|Отправлено|Дата|Tarih)\*?\s?:.*")
_OUTLOOK_TO = re.compile(
    r"\*?(?:To|Subject|An|Betreff|À|Objet|Aan|Onderwerp|A|Oggetto|Do|Temat|Para|Assunto|"
    r"Asunto|Til|Emne|Till|Ämne|Vastaanottaja|Aihe|Komu|Předmět|Кому|Тема|Kime|Konu)"
    r"\*?\s?:.*")

_FORWARD = re.compile(
    r"(?:-{2,}\s*)?(?:Forwarded message|Forwarded Message|Weitergeleitete Nachricht|Message "
    r"transféré|Doorgestuurd bericht|Messaggio inoltrato|Mensaje reenviado|Mensagem "
    r"encaminhada|Przekazana wiadomość|Välitetty viesti|Videresendt meddelelse|Vidarebefordrat "
    r"meddelande|Пересылаемое сообщение|Begin forwarded message|Anfang der weitergeleiteten "
    r"(?:E-Mail|Nachricht)|Début du message réexpédié|Inicio del mensaje reenviado)"
    r"\s*(?:-{2,}|:)", re.IGNORECASE)
# Outlook's forward prefixes in its languages: en, de, fr, es, nl, it, pl, pt, fi, da/no, sv, ru
_FORWARD_SUBJECT = re.compile(r"\s*(?:fwd?|wg|tr|rv|doorst|i|pd|enc|vl|vs|vb|пересл)\s*:",
                              re.IGNORECASE)
_SIGNATURE = re.compile(r"--\s?")  # RFC 3676 §4.3 "-- ", often stored without its space
_SENT_FROM = re.compile(
    r"(?:Sent from|Get Outlook for|Sent with|Gesendet von|Von meinem .{1,40} gesendet|"
    r"Envoyé de|Envoyé depuis|Verzonden (?:vanaf|met)|Verstuurd vanaf|Enviado desde|Enviado do|"
    r"Enviado de|Inviato da|Wysłane z|Wysłano z|Lähetetty|Sendt fra|Skickat från|"
    r"Отправлено с|Отправлено из)\b.{0,60}", re.IGNORECASE)
_SEPARATOR = re.compile(r"[_\-=*]{5,}")


@dataclass(frozen=True)
class QuoteHeader:
    """Where the quoted history starts: `line`, and how many lines the header takes;
    `forward` when it introduces a forwarded message instead."""

    line: int
    lines: int
    forward: bool = False


def strip_quoted(text: str, *, subject: str = "") -> str:
    """What the sender wrote this time, or the whole text when nothing new is left.

    Under a forward's subject (Fwd:, FW:, WG:, …) Outlook's "From: … Sent: …" block
    introduces the message passed on, not a quote, and is kept.
    """
    lines = text.split("\n")
    header = find_quote_header(lines, forwarded=bool(_FORWARD_SUBJECT.match(subject)))
    if header is None:
        new = [_signed_off(lines)]
    elif header.forward:
        return text
    else:
        after = lines[header.line + header.lines:]
        first = next((line for line in after if line.strip()), "")
        new = [_signed_off(lines[:header.line])]
        if _quoted(first):  # quoted with ">": what follows the quote is new (bottom-posting)
            new.append(_signed_off(after))
    visible = _unquoted([line for part in new for line in [*part, ""]])
    return "\n".join(visible).strip("\n") or text


def find_quote_header(lines: list[str], *, forwarded: bool = False) -> QuoteHeader | None:
    """The first quote header outside `>` quotes; one folded over two lines counts as one."""
    for number, line in enumerate(lines[:_SCAN_LINES]):
        if _quoted(line) or len(line) > _SCAN_LINE or not line.strip():
            continue
        if _FORWARD.fullmatch(line.strip()):
            return QuoteHeader(number, 1, forward=True)  # what follows is the message passed on
        rest = lines[number + 1:number + 6]
        if not forwarded and _outlook_header(line, rest):
            return QuoteHeader(number, 1)
        strength = _reply_header(line)
        if strength == "strong":
            return QuoteHeader(number, 1)
        if rest and (joined := _folded(line, rest[0])) and _reply_header(joined) == "strong":
            return QuoteHeader(number, 2)
        if strength == "weak" and _quoted(next((r for r in rest if r.strip()), "")):
            return QuoteHeader(number, 1)
    return None


def _reply_header(line: str) -> str | None:
    """"strong" for an attribution line with an address or a time, "weak" for one without
    (it counts only above a `>` quote), None for any other line."""
    core = line.strip().strip("*").strip()
    if framed := _FRAMED.fullmatch(core):
        core = framed.group(1) + ":"
    if not core.endswith((":", "：")):
        return None
    if _VERB_HEADER.fullmatch(core):
        return "strong" if _ADDRESS.search(core) or _TIME.search(core) else "weak"
    if not core[:-1].rstrip().endswith((">", ")", "]")):  # cheap before the costly pattern
        return None
    return "weak" if _ADDRESS_HEADER.fullmatch(core) else None


def _outlook_header(line: str, rest: list[str]) -> bool:
    core = line.strip()
    if _ORIGINAL.fullmatch(core):
        return True
    if not _OUTLOOK_FROM.fullmatch(core):
        return False
    rest = [r.strip() for r in rest]
    return any(_OUTLOOK_DATE.fullmatch(r) for r in rest) and any(
        _OUTLOOK_TO.fullmatch(r) for r in rest)


def _folded(line: str, following: str) -> str | None:
    """Two lines joined back into the header a client folded ("Ann <" / "ann@x> wrote:").

    When the second line is a header by itself, the first is new text, unless it plainly
    starts a header: it opens an address, or begins as attribution lines do ("On …").
    """
    first, second = line.strip(), following.strip()
    if not second or _quoted(second) or first.endswith((".", "!", "?", ":")):
        return None
    if len(first) + len(second) > _SCAN_LINE:
        return None
    opens = first.endswith(("<", "(", "[", '"', "'"))
    if _reply_header(second) == "strong" and not (opens or _OPENING.match(first)):
        return None
    return first + ("" if opens else " ") + second


def _signed_off(lines: list[str]) -> list[str]:
    """Lines before the signature ("-- "), without leading blank lines, a trailing quote,
    separator line or "Sent from my iPhone"."""
    for number, line in enumerate(lines):
        if _SIGNATURE.fullmatch(line):
            lines = lines[:number]
            break
    lines = list(lines)
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and (not lines[-1].strip() or _quoted(lines[-1])
                     or _SEPARATOR.fullmatch(lines[-1].strip())):
        lines.pop()
    if lines and _SENT_FROM.fullmatch(lines[-1].strip()):
        lines.pop()
    return lines


def _unquoted(lines: list[str]) -> list[str]:
    """Lines without the `>` ones; where a quote was taken out, one blank line stays."""
    kept: list[str] = []
    gap = False
    for line in lines:
        if _quoted(line):
            gap = True
        elif line.strip():
            if gap and kept and kept[-1].strip():
                kept.append("")
            kept.append(line)
            gap = False
        elif not (kept and not kept[-1].strip() and gap):
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return kept


def _quoted(line: str) -> bool:
    return line.lstrip().startswith(">")
