"""`switchboard telegram set-webhook ACCOUNT --url URL`: point Telegram at our webhook."""

from __future__ import annotations

from channels.errors import CommandFailed
from channels.telegram.settings import TelegramSettings


async def set_webhook(account: str, settings: TelegramSettings, *, url: str) -> str:
    """Register `url` as the bot's webhook, with the account's secret token."""
    from channels.telegram.adapter import client_for

    try:
        bot = client_for(account, settings)
    except ValueError as error:
        raise CommandFailed(str(error)) from None
    try:
        await bot.start()
        await bot.set_webhook(url)
    except Exception as error:  # PTB's and httpx's errors alike: say what Telegram said
        raise CommandFailed(f"Telegram refused: {error}") from None
    finally:
        await bot.close()
    return f"webhook of {account} set to {url} (with its secret token)"
