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


def test_telegram_files_the_largest_photo_voice_audio_video_and_no_sticker() -> None:
    from channels.telegram.files import message_files

    found = message_files({
        "message_id": 9,
        "photo": [{"file_id": "small", "width": 90, "height": 90, "file_size": 900},
                  {"file_id": "large", "width": 1280, "height": 960, "file_size": 90_000}],
        "voice": {"file_id": "v", "mime_type": "audio/ogg", "file_size": 10, "duration": 2},
        "audio": {"file_id": "a", "file_name": "song.mp3", "mime_type": "audio/mpeg"},
        "video": {"file_id": "m", "mime_type": "video/mp4", "file_size": 5},
        "sticker": {"file_id": "s", "width": 512, "height": 512},
    })
    assert [(f["name"], f["type"], f["ref"]["file_id"]) for f in found] == [
        ("photo-9.jpg", "image/jpeg", "large"), ("voice.ogg", "audio/ogg", "v"),
        ("song.mp3", "audio/mpeg", "a"), ("video.mp4", "video/mp4", "m")]


def test_slack_sends_its_token_only_to_its_file_hosts_and_api_url() -> None:
    from slack_sdk.web.async_client import AsyncWebClient

    from channels.slack.files import SlackFiles, message_files

    files = SlackFiles(AsyncWebClient(token="xoxb-x"), "http://127.0.0.1:9999/api/")
    assert files._allowed("https://files.slack.com/files-pri/T1-F1/a.png")
    assert files._allowed("https://acme.enterprise.slack.com/files-pri/T1-F1/a.png")
    assert files._allowed("http://127.0.0.1:9999/files-pri/T1-F1/a.png")
    assert not files._allowed("http://files.slack.com/files-pri/a.png")  # not over TLS
    assert not files._allowed("https://files.slack.com.evil.example/a.png")
    assert not files._allowed("http://127.0.0.1:9998/a.png")  # another port: another server
    [entry] = message_files({"files": [{"id": "F1", "name": "a.png", "mimetype": "image/png",
                                        "size": 3, "url_private": "https://files.slack.com/x",
                                        "url_private_download": "https://files.slack.com/d"}]})
    assert entry["ref"] == {"url": "https://files.slack.com/d", "id": "F1"}
