"""A tiny Zope add-on for the tests: views that put zasync jobs, and the jobs they put."""
