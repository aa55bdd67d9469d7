"""The email provider: parse what arrives, check who sent it, serve SMTP, send replies.

`provider` is what the registry knows (`PROVIDER`, the `MailDirectory` the application offers),
`settings` the account's part of bindings.yaml, `adapter` one account running, `listener` the
SMTP server all accounts share; `parse`, `quotes`, `auth`, `automatic`, `dns`, `smtp` and
`outbound` are the building blocks. Import from those modules: this package loads none of
them, so reading a config does not pay for aiosmtpd, dkimpy and dnspython.
"""
