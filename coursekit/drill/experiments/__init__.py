"""The drill's experiments: each `f(lab) -> observed answer` runs on the real workers of a `DrillLab` and returns
what it saw, in the form of its question's answer (a choice, a number, a list of task names, a text). They never
return a constant: every value is read off what the workers did (results, ledgers, logs, the broker's keys,
`inspect` replies). Grouped by topic, one module each; `common` has what they share."""
