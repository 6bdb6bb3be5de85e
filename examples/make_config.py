"""Regenerate examples/config.yaml: every setting with its default and description."""

from pathlib import Path

import yaml

from distillqa.config import Config

HEADER = [
    "# distillqa config: every setting with its default. Use with --config examples/config.yaml;",
    "# any setting can also be overridden on the command line: --set train.epochs=2",
    "",
]


def render() -> str:
    lines = list(HEADER)
    for name in Config.model_fields:
        section = getattr(Config(), name)
        lines.append(f"{name}:")
        for key, field in type(section).model_fields.items():
            value = yaml.safe_dump({key: getattr(section, key)}, default_flow_style=True, width=1000).strip()[1:-1]
            lines.append(f"  {value}" + (f"  # {field.description}" if field.description else ""))
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    Path(__file__).with_name("config.yaml").write_text(render())
