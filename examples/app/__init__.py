"""The reference service: settings -> db -> models -> schemas -> services -> api -> main."""
