"""radclip.integrations"""
