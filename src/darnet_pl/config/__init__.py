"""Reading the Hydra config: the resolvers it uses and the typed checks of what a user typed. Imports runs/, utils/."""
