"""Patient name search: key generation for the equality-keyed term dictionary."""
