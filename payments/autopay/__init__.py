"""Autopay (P6, P7): a saved card charged for each new invoice of a practice that offers it, never an FSA/HSA/HRA
card. Import from here (`from payments import autopay`); the modules below are where each part lives:

- `payments.rules`: the pure rules (benefit-card detection, the consent's wording);
- `selectors`: which practices offer autopay to a patient, the current enrollment;
- `enrollment`: turning autopay on (with consent) and off;
- `charges`: scheduling a charge per new invoice, running what is due, falling back to the emailed link;
- `emails`: the notice before a charge and the word that one failed.
"""

from payments.autopay.charges import (
    autopay_attempt_run,
    autopay_due,
    autopay_scheduled_cancel,
    autopay_take_over,
    invoice_announce,
)
from payments.autopay.emails import autopay_email_send
from payments.autopay.enrollment import BENEFIT_REFUSED, NO_PRACTICE, autopay_end, autopay_enroll
from payments.autopay.selectors import active_enrollment, autopay_practices
from payments.rules import CONSENT, CONSENT_VERSION, benefit_card_reason, consent_text

__all__ = [
    "BENEFIT_REFUSED",
    "CONSENT",
    "CONSENT_VERSION",
    "NO_PRACTICE",
    "active_enrollment",
    "autopay_attempt_run",
    "autopay_due",
    "autopay_email_send",
    "autopay_end",
    "autopay_enroll",
    "autopay_practices",
    "autopay_scheduled_cancel",
    "autopay_take_over",
    "benefit_card_reason",
    "consent_text",
    "invoice_announce",
]
