"""The access audit trail: who viewed or changed which patient, in which clinic, when."""
