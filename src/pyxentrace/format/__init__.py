"""Pure data and pure functions shared by every stage: event catalog, record header, layouts."""
