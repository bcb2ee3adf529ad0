"""Operations for people, without click or Flask: queries, views, actions, metrics, live view."""
