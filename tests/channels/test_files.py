"""The file rules providers and the application share: which files are fetched (a pure
function of the account's limits), and names fit for a download."""

from __future__ import annotations

from channels.files import FileLimits, human_size, inbound_file, safe_name, skip_reason

LIMITS = FileLimits(max_file_bytes="1MB", allowed_types=("image/*", "application/pdf"),
                    max_files_per_message=2)


def test_a_file_within_every_limit_is_fetched() -> None:
    assert skip_reason(LIMITS, "shot.png", "image/png", 1000, 0) is None
    assert skip_reason(LIMITS, "doc.pdf", "Application/PDF", None, 1) is None  # size unknown


def test_each_limit_says_why_in_words() -> None:
    assert skip_reason(LIMITS, "report.zip", "image/png", 45_000_000, 0) == \
        "report.zip skipped: 45 MB is over the 1 MB limit"
    assert skip_reason(LIMITS, "a.exe", "application/x-msdownload", 10, 0) == \
        "a.exe skipped: type application/x-msdownload is not allowed here"
    assert skip_reason(LIMITS, "third.png", "image/png", 10, 2) == \
        "third.png skipped: a message may carry at most 2 files"
    assert skip_reason(FileLimits(), "any.bin", "application/octet-stream", 20 * 2**20, 0) \
        is None  # the default: 20 MiB, any type


def test_names_lose_paths_and_unsafe_characters() -> None:
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("C:\\Users\\x\\report.pdf") == "report.pdf"
    assert safe_name('a"b<c>\r\n.txt') == "a_b_c_.txt"
    assert safe_name("...") == "file"
    long = safe_name("x" * 300 + ".csv")
    assert len(long) == 200 and long.endswith(".csv")
    assert inbound_file("../x.png", "", 3)["name"] == "x.png"
    assert inbound_file("x", "", 3)["type"] == "application/octet-stream"


def test_sizes_read_as_people_write_them() -> None:
    assert [human_size(n) for n in (12, 512_000, 45_000_000)] == ["12 bytes", "512 KB", "45 MB"]
