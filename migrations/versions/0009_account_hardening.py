"""Email addresses in one normal form; invitation links told apart from reset links; registrations wait
for their emailed link; the two-factor secret being set up is kept on the server.

Revision ID: 0009_account_hardening
Revises: 0008_row_versions
Create Date: 2026-12-01 23:20:00.000000

"""
import json

import sqlalchemy as sa
from alembic import op
from email_validator import EmailNotValidError, validate_email

# The same function the application stores and compares addresses with, so what is written here is
# what sign-in looks up.
from shop.accounts.email_address import normalise_email

# revision identifiers, used by Alembic.
revision = '0009_account_hardening'
down_revision = '0008_row_versions'
branch_labels = None
depends_on = None

users = sa.table('user_account', sa.column('id', sa.Integer), sa.column('email', sa.String))
resets = sa.table('password_reset', sa.column('id', sa.Integer), sa.column('user_id', sa.Integer),
                  sa.column('purpose', sa.String))
audit = sa.table('audit_event', sa.column('action', sa.String), sa.column('object_type', sa.String),
                 sa.column('object_id', sa.String), sa.column('details', sa.Text))


def _normalise_addresses() -> None:
    """Before, addresses were stored NFC and lower-cased with a Unicode domain (`b@bücher.example`):
    write them in the new form. Two accounts that turn out to be one address are not merged behind
    anyone's back: the migration stops, names them and changes nothing."""
    bind = op.get_bind()
    rows = bind.execute(sa.select(users.c.id, users.c.email).order_by(users.c.id)).all()
    changes, owner = [], {}
    for user_id, email in rows:
        try:
            normal = normalise_email(email)
        except ValueError:
            normal = email  # not an address by today's rules: left as it is (it can still sign in)
        owner.setdefault(normal, []).append(user_id)
        if normal != email:
            changes.append({'user_id': user_id, 'value': normal})
    clashes = {email: ids for email, ids in owner.items() if len(ids) > 1}
    if clashes:
        listed = '; '.join(f"{email}: accounts {', '.join(map(str, ids))}" for email, ids in clashes.items())
        raise RuntimeError(
            'Migration 0009_account_hardening: these accounts are one email address once normalised; '
            f'disable or change all but one of each, then run the upgrade again: {listed}')
    if changes:
        bind.execute(users.update().where(users.c.id == sa.bindparam('user_id'))
                     .values(email=sa.bindparam('value')), changes)


def _mark_invitations() -> None:
    """Links made when an admin created a staff account (the audit row of the creation says invited)
    become invitations, so an account whose owner never chose a password shows as pending."""
    bind = op.get_bind()
    invited = set()
    for object_id, details in bind.execute(
        sa.select(audit.c.object_id, audit.c.details)
        .where(audit.c.action == 'account.created', audit.c.object_type == 'user')
    ):
        try:
            if json.loads(details or '{}').get('invited') is True and object_id is not None:
                invited.add(int(object_id))
        except (ValueError, AttributeError):
            continue
    if invited:
        bind.execute(resets.update().where(resets.c.user_id.in_(sorted(invited))).values(purpose='invitation'))


def upgrade():
    _normalise_addresses()

    with op.batch_alter_table('password_reset', schema=None) as batch_op:
        batch_op.add_column(sa.Column('purpose', sa.String(length=20), server_default='reset', nullable=False))
        batch_op.create_check_constraint(op.f('ck_password_reset_purpose'), "purpose IN ('reset', 'invitation')")
    _mark_invitations()

    op.create_table('pending_registration',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('password_hash', sa.String(length=256), nullable=False),
    sa.Column('legal_name', sa.String(length=160), nullable=False),
    sa.Column('date_of_birth', sa.Date(), nullable=False),
    sa.Column('privacy_consent_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pending_registration')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_pending_registration_token_hash'))
    )
    with op.batch_alter_table('pending_registration', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pending_registration_email'), ['email'], unique=False)


def _restore_unicode_domains() -> None:
    """The code before this revision looks addresses up with a Unicode domain: write them so again
    (full-width and other compatibility spellings are not restored: they were one address anyway)."""
    bind = op.get_bind()
    changes = []
    for user_id, email in bind.execute(sa.select(users.c.id, users.c.email)).all():
        try:
            old = validate_email(email, check_deliverability=False).normalized.lower()
        except EmailNotValidError:
            continue
        if old != email:
            changes.append({'user_id': user_id, 'value': old})
    if changes:
        bind.execute(users.update().where(users.c.id == sa.bindparam('user_id'))
                     .values(email=sa.bindparam('value')), changes)


def downgrade():
    with op.batch_alter_table('pending_registration', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pending_registration_email'))

    op.drop_table('pending_registration')

    with op.batch_alter_table('password_reset', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_password_reset_purpose'), type_='check')
        batch_op.drop_column('purpose')

    _restore_unicode_domains()
