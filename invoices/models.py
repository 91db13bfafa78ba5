"""Practices, providers, patients, coverage and eligibility, EAP authorizations, sessions and their invoices."""

from datetime import date, timedelta

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from phonenumber_field.modelfields import PhoneNumberField

from alma_billing.core.money import format_cents


class Practice(models.Model):
    class AutopayPolicy(models.TextChoices):
        OFF = "off", "Off: patients pay each invoice"
        OPTIONAL = "optional", "Optional: patients may enroll"
        REQUIRED = "required", "Required: patients are asked to enroll"

    name = models.CharField(max_length=200, unique=True)
    autopay_policy = models.CharField(max_length=16, choices=AutopayPolicy.choices, default=AutopayPolicy.OFF)

    def __str__(self) -> str:
        return self.name


class Provider(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="provider")
    practice = models.ForeignKey(Practice, on_delete=models.PROTECT, related_name="providers")
    display_name = models.CharField(max_length=200)
    npi = models.CharField(
        "NPI", max_length=10, unique=True, validators=[RegexValidator(r"^\d{10}$", "An NPI is 10 digits.")]
    )

    def __str__(self) -> str:
        return self.display_name


class EmailUndeliverable(models.TextChoices):
    """Why the email service says an address cannot be used (a code; staff read the label)."""

    BOUNCED = "bounced", "Bounced (the mailbox does not accept mail)"
    COMPLAINED = "complained", "Marked as spam by the recipient"
    REJECTED = "rejected", "Refused by the email service (earlier bounces or complaints)"


class Patient(models.Model):
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    email = models.EmailField(blank=True)
    # Stored in E.164; it controls access to the pay link (P4).
    phone = PhoneNumberField()
    stripe_customer_id = models.CharField(max_length=64, blank=True)
    # Emails, SMS, receipts and (until the patient picks one with the switch) the pages use this language.
    preferred_language = models.CharField(max_length=8, choices=[("en", "English"), ("es", "Español")], default="en")
    # The provider who added the patient in the admin: they see the patient before the first session exists.
    added_by = models.ForeignKey(
        "Provider", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Deliverability (issue 15): the email service reported this address bouncing or complained of as spam. Invoice
    # emails and reminders skip it until staff update the email (invoices/deliverability.py).
    email_undeliverable_reason = models.CharField(  # db_default: rolling deploys (older code inserts patients too)
        max_length=16, choices=EmailUndeliverable.choices, blank=True, editable=False, default="", db_default=""
    )
    email_undeliverable_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["last_name", "first_name", "id"]
        # Tracking events name an address in any case: matched with UPPER(email) = UPPER(%s) (iexact).
        indexes = [models.Index(Upper("email"), name="patient_email_upper")]

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def email_bouncing(self) -> bool:
        return bool(self.email_undeliverable_reason)


class Coverage(models.Model):
    """A patient's health plan; eligibility checks hang off it."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="coverages")
    payer_name = models.CharField(max_length=200)
    plan_name = models.CharField(max_length=200, blank=True)
    member_id = models.CharField(max_length=64)
    is_active = models.BooleanField(default=True, help_text="Unset when the patient no longer uses this plan.")

    def __str__(self) -> str:
        return f"{self.payer_name} ({self.member_id})"


class EligibilitySnapshot(models.Model):
    """One eligibility check against a plan, as the payer answered it (P2 uses the latest completed one)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    coverage = models.ForeignKey(Coverage, on_delete=models.PROTECT, related_name="eligibility_checks")
    checked_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETED)
    plan_active = models.BooleanField(default=True)
    copay_cents = models.IntegerField(null=True, blank=True)
    coinsurance_bp = models.IntegerField("coinsurance (basis points)", null=True, blank=True)
    deductible_remaining_cents = models.IntegerField(default=0)
    oop_max_remaining_cents = models.IntegerField("out-of-pocket max remaining (cents)", null=True, blank=True)
    raw_payload = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-checked_at", "-id"]
        get_latest_by = "checked_at"
        constraints = [
            models.CheckConstraint(
                condition=Q(copay_cents__gte=0) | Q(copay_cents__isnull=True), name="elig_copay_gte_0"
            ),
            models.CheckConstraint(
                condition=Q(coinsurance_bp__isnull=True) | Q(coinsurance_bp__gte=0, coinsurance_bp__lte=10_000),
                name="elig_coinsurance_0_to_10000",
            ),
            models.CheckConstraint(condition=Q(deductible_remaining_cents__gte=0), name="elig_deductible_gte_0"),
            models.CheckConstraint(
                condition=Q(oop_max_remaining_cents__gte=0) | Q(oop_max_remaining_cents__isnull=True),
                name="elig_oop_gte_0",
            ),
        ]

    def __str__(self) -> str:
        return f"Eligibility check #{self.pk} on {self.checked_at:%Y-%m-%d}"


class EapAuthorization(models.Model):
    """An Employee Assistance Program authorization: a number of sessions at no cost to the patient (P9)."""

    class Program(models.TextChoices):
        OPTUM_LWW = "optum_lww", "Optum Live & Work Well EAP"
        OPTUM_EWS = "optum_ews", "Optum Emotional Wellbeing Solutions"
        OTHER = "other", "Other EAP (not in network)"

    IN_NETWORK = frozenset({Program.OPTUM_LWW, Program.OPTUM_EWS})

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="eap_authorizations")
    program = models.CharField(max_length=16, choices=Program.choices)
    program_name = models.CharField(max_length=200, blank=True, help_text="The EAP's name when it is not Optum.")
    authorization_code = models.CharField(max_length=64)
    sessions_authorized = models.PositiveIntegerField()
    sessions_used = models.PositiveIntegerField(default=0)
    valid_from = models.DateField()
    valid_until = models.DateField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["program", "authorization_code"], name="eap_auth_code_unique"),
            models.CheckConstraint(
                condition=Q(sessions_used__lte=models.F("sessions_authorized")), name="eap_used_lte_authorized"
            ),
            models.CheckConstraint(condition=Q(valid_until__gte=models.F("valid_from")), name="eap_valid_range"),
        ]

    def __str__(self) -> str:
        return f"{self.get_program_display()} {self.authorization_code}"

    @property
    def in_network(self) -> bool:
        return self.program in self.IN_NETWORK

    def covers(self, day: date) -> bool:
        return self.valid_from <= day <= self.valid_until and self.sessions_used < self.sessions_authorized


class TherapySession(models.Model):
    class Status(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        COMPLETED = "completed", "Completed"
        CANCELED = "canceled", "Canceled"

    class BillingType(models.TextChoices):
        INSURANCE = "insurance", "Insurance"
        SELF_PAY = "self_pay", "Self-pay"
        EAP = "eap", "EAP"

    class Outcome(models.TextChoices):
        PENDING = "pending", "Not billed yet"
        INVOICED = "invoiced", "Invoiced"
        NO_CHARGE = "no_charge", "Nothing owed"
        NEEDS_ATTENTION = "needs_attention", "Needs attention"

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="sessions")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="sessions")
    date_of_service = models.DateField()
    cpt_code = models.CharField("CPT code", max_length=5, validators=[RegexValidator(r"^\d{4}[0-9A-Z]$")])
    billing_type = models.CharField(max_length=16, choices=BillingType.choices, default=BillingType.INSURANCE)
    allowed_amount_cents = models.IntegerField(null=True, blank=True, help_text="The plan's allowed amount.")
    self_pay_rate_cents = models.IntegerField(null=True, blank=True, help_text="The out-of-pocket rate.")
    eap_authorization = models.ForeignKey(
        EapAuthorization, null=True, blank=True, on_delete=models.PROTECT, related_name="sessions"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SCHEDULED)
    completed_at = models.DateTimeField(null=True, blank=True)
    billing_outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.PENDING)
    # Why ops must look (no eligibility check, inactive plan, out-of-network EAP...), or why nothing is owed.
    billing_note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-date_of_service", "-id"]
        indexes = [models.Index(fields=["status", "billing_outcome"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(allowed_amount_cents__gte=0) | Q(allowed_amount_cents__isnull=True),
                name="session_allowed_gte_0",
            ),
            models.CheckConstraint(
                condition=Q(self_pay_rate_cents__gt=0) | Q(self_pay_rate_cents__isnull=True), name="session_rate_gt_0"
            ),
        ]

    def __str__(self) -> str:
        return f"Session #{self.pk} on {self.date_of_service}"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        authorization = self.eap_authorization if self.eap_authorization_id else None
        if authorization is not None and self.patient_id and authorization.patient_id != self.patient_id:
            raise ValidationError({"eap_authorization": "This EAP authorization belongs to another patient."})


class Invoice(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        PROCESSING = "processing", _("Payment processing")
        PAID = "paid", _("Paid")
        VOID = "void", _("Void")

    class Kind(models.TextChoices):
        INSURANCE = "insurance", "Insurance responsibility"
        SELF_PAY = "self_pay", "Self-pay"
        # P13: what the plan decided the patient owes beyond the estimate; its own invoice, linked to the original.
        ADJUSTMENT = "adjustment", "Adjustment (the plan's decision)"

    number = models.CharField(max_length=20, unique=True)
    # One original invoice per session (a constraint below); adjustments for the same session are their own kind.
    session = models.ForeignKey(
        TherapySession, on_delete=models.PROTECT, related_name="invoices", related_query_name="invoice"
    )
    adjusts = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="adjustments", editable=False
    )
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="invoices")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="invoices")
    practice = models.ForeignKey(Practice, on_delete=models.PROTECT, related_name="invoices")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount_cents = models.IntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    eligibility_snapshot = models.ForeignKey(
        EligibilitySnapshot, null=True, blank=True, on_delete=models.PROTECT, related_name="invoices"
    )
    # How much of this invoice went to the deductible, so later sessions on the same check do not count it twice.
    deductible_applied_cents = models.IntegerField(default=0)
    # P13: what the plan's decision took off this invoice while it was open, the sum of its live credits
    # (claims.InvoiceCredit, the record; only claims.services writes either). amount_cents stays as issued.
    credited_cents = models.IntegerField(default=0, db_default=0)  # db_default: rolling deploys
    # The inputs and arithmetic behind amount_cents (see invoices.explain), kept as issued.
    calculation = models.JSONField(default=dict)
    issued_at = models.DateTimeField(auto_now_add=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    email_problem = models.CharField(max_length=200, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.TextField(blank=True)
    # A card dispute was opened on a payment for this invoice: staff must look.
    disputed_at = models.DateTimeField(null=True, blank=True)
    # P3: the patient says they paid outside the platform. The invoice stays open and reminders go on; ops
    # reconcile it (void with a reason, or a real payment through the link).
    outside_payment_reported_at = models.DateTimeField(null=True, blank=True)
    outside_payment_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-session__date_of_service", "-id"]
        indexes = [
            models.Index(fields=["patient", "status"]),
            models.Index(fields=["status", "issued_at"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["session"], condition=~Q(kind="adjustment"), name="one_original_invoice_per_session"
            ),
            models.CheckConstraint(
                condition=Q(kind="adjustment") | Q(adjusts__isnull=True), name="invoice_only_adjustments_adjust"
            ),
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="invoice_amount_gt_0"),
            models.CheckConstraint(
                condition=Q(deductible_applied_cents__gte=0)
                & Q(deductible_applied_cents__lte=models.F("amount_cents")),
                name="invoice_deductible_within_amount",
            ),
            models.CheckConstraint(
                condition=Q(credited_cents__gte=0) & Q(credited_cents__lte=models.F("amount_cents")),
                name="invoice_credited_within_amount",
            ),
        ]

    def __str__(self) -> str:
        credit = f" less {format_cents(self.credited_cents)} credited" if self.credited_cents else ""
        return f"{self.number} ({format_cents(self.amount_cents)}{credit}, {self.get_status_display()})"

    @property
    def owed_cents(self) -> int:
        """What paying this invoice costs: the issued amount less the plan's credits (P13). Payments, the summary,
        reminders and autopay all charge this, never amount_cents."""
        return self.amount_cents - self.credited_cents


class ReminderRun(models.Model):
    """One evaluation of the reminder schedule (daily by beat, or by hand), with what it did, for ops."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        FINISHED = "finished", "Finished"
        FAILED = "failed", "Failed"
        INTERRUPTED = "interrupted", "Interrupted"

    as_of = models.DateField()
    dry_run = models.BooleanField(default=False)
    triggered_by = models.CharField(max_length=64, default="beat")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    patients_reminded = models.PositiveIntegerField(default=0)
    invoices_covered = models.PositiveIntegerField(default=0)
    skipped_no_email = models.PositiveIntegerField(default=0)
    skipped_already_today = models.PositiveIntegerField(default=0)
    skipped_undeliverable = models.PositiveIntegerField(default=0, db_default=0)  # db_default: rolling deploys
    failures = models.PositiveIntegerField(default=0)
    in_doubt = models.PositiveIntegerField(default=0, db_default=0)  # db_default: rolling deploys
    error = models.TextField(blank=True)
    # Written as the run makes progress: a "running" run whose heartbeat stopped was killed, and is shown (and
    # recorded by the next run) as interrupted.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"Reminder run #{self.pk} for {self.as_of}"

    @property
    def status_shown(self) -> str:
        """What ops read: a "running" run whose heartbeat stopped 15 minutes ago was killed, whatever its row says."""
        stale = self.heartbeat_at is None or timezone.now() - self.heartbeat_at > timedelta(minutes=15)
        if self.status == self.Status.RUNNING and stale:
            return "Interrupted (stopped without finishing)"
        return str(self.get_status_display())


class ReminderLog(models.Model):
    """At most one reminder per patient per day (database rule). Also the outbox the emails are sent from."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"  # claimed; the email is being handed to the mail server
        SENT = "sent", "Sent"
        SKIPPED = "skipped", "Skipped"
        FAILED = "failed", "Failed"  # gave up after repeated refusals; the next schedule point tries again
        IN_DOUBT = "in_doubt", "In doubt"  # interrupted while sending: maybe delivered; never resent blindly

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="reminders")
    sent_on = models.DateField()
    run = models.ForeignKey(ReminderRun, on_delete=models.SET_NULL, null=True, related_name="logs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    invoice_ids = models.JSONField(default=list)
    total_cents = models.IntegerField(default=0)
    reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, db_default=0)  # db_default: rolling deploys

    class Meta:
        ordering = ["-sent_on", "-id"]
        constraints = [models.UniqueConstraint(fields=["patient", "sent_on"], name="one_reminder_per_patient_per_day")]
        indexes = [models.Index(fields=["status", "sent_on"])]

    def __str__(self) -> str:
        return f"Reminder to patient #{self.patient_id} on {self.sent_on} ({self.status})"


class EmailEvent(models.Model):
    """One signed tracking event from the email service, kept by its id so a replay changes nothing.

    Holds no address: an event about an address no patient has stores only its id, kind and time."""

    provider = models.CharField(max_length=32)
    event_id = models.CharField(max_length=128)
    event_type = models.CharField(max_length=32)
    reason = models.CharField(max_length=16, blank=True)
    patients_marked = models.PositiveIntegerField(default=0)
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["provider", "event_id"], name="one_email_event_per_id")]

    def __str__(self) -> str:
        return f"{self.provider} {self.event_type} event #{self.pk}"
