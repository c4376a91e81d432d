"""Operations simulation ("soak"): the real sensors, schedules and runs over many consecutive
sessions with a moving clock, against the emulator, with a scripted chaos plan; an audit of the
database against the emulator's truth proves the archive is exact. `swiftbolt soak`."""
