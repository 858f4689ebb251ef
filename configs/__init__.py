"""The default configs, shipped inside the package (`crm_ltv.configs`). A `configs/` folder in
the project home overrides them file by file; `crm-ltv init` writes them there for editing."""
