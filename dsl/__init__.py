"""The .exp language: parser, resolver, checker, compiler, formatter and the `repro` command line."""
