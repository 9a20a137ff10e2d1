//! Cron schedules with time zones, jitter and catch-up, computed against an injected clock.
