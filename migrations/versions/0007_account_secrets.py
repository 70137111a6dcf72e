"""Two-factor secrets encrypted at rest (AES-GCM, bound to their user id); an index on stock_movement.lot_id.

Revision ID: 0007_account_secrets
Revises: 0006_catalog_versions
Create Date: 2026-11-24 22:46:02.821109

"""
from pathlib import Path

from alembic import op
import sqlalchemy as sa
from flask import current_app

# The key comes from the application's own settings (ACCOUNT_SECRETS_KEY, or the development key file),
# read by the same code the application uses, so the secrets sealed here are the ones it opens.
from shop.accounts import secret_box


# revision identifiers, used by Alembic.
revision = '0007_account_secrets'
down_revision = '0006_catalog_versions'
branch_labels = None
depends_on = None

users = sa.table('user_account', sa.column('id', sa.Integer), sa.column('totp_secret', sa.String))


def _stored_secrets() -> list[tuple[int, str]]:
    rows = op.get_bind().execute(
        sa.select(users.c.id, users.c.totp_secret)
        .where(users.c.totp_secret.is_not(None))
        .order_by(users.c.id)
    )
    return [(user_id, value) for user_id, value in rows]


def _key() -> bytes:
    try:
        return secret_box.load_key(current_app.config, Path(current_app.instance_path))
    except RuntimeError as error:
        raise RuntimeError(
            f"Migration 0007_account_secrets needs the key that encrypts two-factor secrets: {error}"
        ) from None


def _write(values: list[dict[str, object]]) -> None:
    if values:
        op.get_bind().execute(
            users.update().where(users.c.id == sa.bindparam('user_id'))
            .values(totp_secret=sa.bindparam('value')),
            values,
        )


def upgrade():
    # Everything that can fail (no key) happens before the first change, so a refusal changes nothing.
    # Plain base32 secrets never contain ':', so an already sealed value is recognised and left alone.
    def plain() -> list[tuple[int, str]]:
        return [(user_id, value) for user_id, value in _stored_secrets()
                if not value.startswith(secret_box.PREFIX)]

    key = _key() if plain() else b''

    with op.batch_alter_table('stock_movement', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stock_movement_lot_id'), ['lot_id'], unique=False)

    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.alter_column('totp_secret',
               existing_type=sa.VARCHAR(length=64),
               type_=sa.String(length=200),
               existing_nullable=True)

    # Read the secrets again after the ALTER: on PostgreSQL it holds the table's lock until the
    # migration commits, so a secret an old app process enrolled meanwhile is sealed too. And after
    # widening: a sealed value (83 characters) does not fit the old column.
    remaining = plain()
    key = key or (_key() if remaining else b'')
    _write([{'user_id': user_id, 'value': secret_box.seal_with(key, user_id, value)}
            for user_id, value in remaining])


def downgrade():
    # Open every value first: one that does not open (another key, tampered) stops the downgrade
    # before anything changes, rather than leaving a secret nobody can use.
    sealed = [(user_id, value) for user_id, value in _stored_secrets()
              if value.startswith(secret_box.PREFIX)]
    key = _key() if sealed else b''
    try:
        plain = [{'user_id': user_id, 'value': secret_box.open_with(key, user_id, value)}
                 for user_id, value in sealed]
    except secret_box.UnreadableSecret as error:
        raise RuntimeError(f"Migration 0007_account_secrets cannot decrypt: {error}") from None

    # Before narrowing: the sealed values do not fit the old column.
    _write(plain)

    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.alter_column('totp_secret',
               existing_type=sa.String(length=200),
               type_=sa.VARCHAR(length=64),
               existing_nullable=True)

    with op.batch_alter_table('stock_movement', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stock_movement_lot_id'))
