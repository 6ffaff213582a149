"""The GraphQL surface: queries, mutations, subscriptions, limits, and GraphiQL in a browser."""
